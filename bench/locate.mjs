// npm run bench -- locate
// 1. Start-up: median wall time of `shardctl locate 123 --offline` next to `node -e 0`, interleaved in
//    the same run (target: at most 2x).
// 2. In-process `router.locate` throughput with the directory cached (target: over 1,000,000 per second),
//    for the modulo rule and the hash rule, against real shards holding 1,000 directory entries.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRouter, ensureCatalogSchema, loadShardMap, setPlacement, ShardPools } from '../dist/index.js';
import { median, startBenchCluster } from './_cluster.mjs';

const bin = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'bin', 'shardctl');

function wall(args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'ignore'] });
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export default async function bench(args) {
  const runs = Number(args[0] ?? 25);
  const offlineMap = path.join(os.tmpdir(), 'shardctl-bench-locate.yaml');
  writeFileSync(
    offlineMap,
    'version: 1\nshardKey: { column: tenant_id, type: bigint }\nplacement: { strategy: modulo }\nshards:\n  - name: shard-0\n    url: postgres://u@127.0.0.1:1/d\n  - name: shard-1\n    url: postgres://u@127.0.0.1:2/d\n',
  );
  const node = [];
  const cli = [];
  wall(['-e', '0']);
  wall([bin, '-c', offlineMap, 'locate', '123', '--offline']);
  for (let i = 0; i < runs; i++) {
    node.push(wall(['-e', '0']));
    cli.push(wall([bin, '-c', offlineMap, 'locate', '123', '--offline']));
  }
  const mNode = median(node);
  const mCli = median(cli);
  console.log(`start-up over ${runs} runs each (medians):`);
  console.log(`  node -e 0                          ${mNode.toFixed(1)} ms`);
  console.log(`  shardctl locate 123 --offline      ${mCli.toFixed(1)} ms`);
  console.log(`  ratio                              ${(mCli / mNode).toFixed(2)}x  (target <= 2x)`);

  for (const strategy of ['modulo', 'hash']) {
    const cluster = await startBenchCluster({ shards: 2, strategy });
    try {
      const map = await loadShardMap(cluster.mapFile);
      const pools = await ShardPools.open(map);
      await pools.withShard(map.catalog, async (c) => {
        await ensureCatalogSchema(c);
        for (let t = 0; t < 1000; t++) await setPlacement(c, String(t * 7), 'shard-1', { ruleShard: 'shard-0' });
      });
      await pools.close();
      const router = await createRouter(map, { directoryTtlMs: 60_000 });
      const n = 3_000_000;
      let sink = 0;
      for (let i = 0; i < 200_000; i++) sink += router.locate(i).shard.length; // warm-up
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) sink += router.locate(i).shard.length;
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      console.log(
        `router.locate (${strategy}, 1,000 directory entries cached): ${(n / s / 1e6).toFixed(2)} M/s  (target > 1 M/s)  [${sink > 0 ? 'ok' : ''}]`,
      );
      await router.close();
    } finally {
      await cluster.stop();
    }
  }
}
