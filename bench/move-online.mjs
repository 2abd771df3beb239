// npm run bench -- move-online [rows] [moves per capture]
// A tenant of about 1,000,000 rows (the example schema) with a writer at about 500 writes per second
// on it (inserts, updates, deletes of its users, through a router that follows the move). In the
// same run: a fenced move of the tenant as the baseline, then online moves back and forth, alternating
// the two change captures (logical replication, change-log triggers), 3 of each by default.
// Reported per online move: copy time, total time, replication lag when the pause began, and the write
// pause the writer saw (first rejected write to the first write accepted on the new shard).
// Targets: pause under 1 s median and under 2 s maximum; total time at most 1.5x the fenced move;
// trigger capture: total within 1.5x of logical replication, pause median under 250 ms, max under 1 s.
import { createRouter, isFenceError, moveTenant } from '../dist/index.js';
import { startBenchCluster } from './_cluster.mjs';
import { applySchema, loadBigTenant, MIGRATIONS, TABLES } from './_tenant.mjs';

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** ~rate writes/s on tenant 1's users through the router; measures pauses across shard changes. */
function startWriter(router, rate) {
  const state = { running: true, writes: 0, rejections: 0, errors: [], pauses: [], lifted: [] };
  const ids = [];
  let n = 0;
  const loops = 5;
  const loop = async () => {
    while (state.running) {
      const started = performance.now();
      const r = Math.random();
      let sql;
      let params;
      if (ids.length < 50 || r < 0.5) {
        sql = 'INSERT INTO users (tenant_id, email, name) VALUES (1, $1, $2) RETURNING id';
        params = [`w${++n}-${Date.now()}@bench`, 'writer'];
      } else if (r < 0.85) {
        sql = 'UPDATE users SET name = $2 WHERE tenant_id = 1 AND id = $1';
        params = [ids[Math.floor(Math.random() * ids.length)], `v${++n}`];
      } else {
        sql = 'DELETE FROM users WHERE tenant_id = 1 AND id = $1';
        params = [ids.splice(Math.floor(Math.random() * ids.length), 1)[0]];
      }
      let rejectedAt;
      let rejectedOn;
      for (;;) {
        const shard = router.locate(1).shard;
        try {
          const res = await router.pools.pool(shard).query(sql, params);
          if (res.rows[0]?.id) ids.push(res.rows[0].id);
          state.writes++;
          if (rejectedAt !== undefined)
            (shard !== rejectedOn ? state.pauses : state.lifted).push(performance.now() - rejectedAt);
          break;
        } catch (e) {
          if (!isFenceError(e)) {
            state.errors.push(e.message);
            break;
          }
          state.rejections++;
          if (rejectedAt === undefined) {
            rejectedAt = performance.now();
            rejectedOn = shard;
          }
          await router.refresh(e);
          await new Promise((res) => setTimeout(res, 5));
        }
      }
      const wait = (1000 * loops) / rate - (performance.now() - started);
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
    }
  };
  const running = Array.from({ length: loops }, loop);
  return {
    state,
    stop: async () => {
      state.running = false;
      await Promise.all(running);
    },
  };
}

export default async function bench(args) {
  const target = Number(args[0] ?? 1_000_000);
  const perCapture = Number(args[1] ?? 3);
  const captures = Array.from({ length: perCapture * 2 }, (_, i) => (i % 2 === 0 ? 'logical' : 'trigger'));
  const cluster = await startBenchCluster({ shards: 2, migrations: MIGRATIONS });
  try {
    await applySchema(cluster);
    // tenant 1 lives on shard-1 (1 mod 2)
    const total = await loadBigTenant(cluster.urls[1], target);
    console.log(
      `tenant rows: ${total.toLocaleString('en-US')} in ${TABLES.length} tables; writer at about 500 writes/s on the tenant`,
    );

    const router = await createRouter(cluster.map, { directoryTtlMs: 60_000 });
    const writer = startWriter(router, 500);
    const results = [];
    try {
      // Baseline first, on fresh tables: the fenced move of the same tenant, writer running.
      const t1 = performance.now();
      const fencedBefore = writer.state.pauses.length;
      const { move: fencedMove } = await moveTenant(cluster.map, 1, 'shard-0', { mode: 'fenced' });
      const fenced = (performance.now() - t1) / 1000;
      await new Promise((res) => setTimeout(res, 1000));
      const fencedPause = writer.state.pauses.slice(fencedBefore);
      if (fencedMove.state !== 'done') throw new Error(`fenced move ended ${fencedMove.state}`);
      console.log(
        `  fenced move (baseline): ${fenced.toFixed(1)} s (copy ${(fencedMove.stats.copy.ms / 1000).toFixed(1)} s); write pause ${(Math.max(0, ...fencedPause) / 1000).toFixed(1)} s`,
      );
      let where = 0;
      for (const [i, capture] of captures.entries()) {
        const to = 1 - where;
        let lag = { bytes: 0, seconds: 0 };
        const pausesBefore = writer.state.pauses.length;
        const writesBefore = writer.state.writes;
        const t0 = performance.now();
        const { move } = await moveTenant(cluster.map, 1, `shard-${to}`, {
          capture,
          onProgress: (e) => {
            if (e.phase === 'replicating' && e.lagBytes !== undefined && e.message?.startsWith('caught up'))
              lag = { bytes: e.lagBytes, seconds: e.lagSeconds ?? 0 };
          },
        });
        const seconds = (performance.now() - t0) / 1000;
        const mode = capture === 'logical' ? 'online' : 'trigger';
        if (move.state !== 'done' || move.mode !== mode) throw new Error(`move ended ${move.state} (${move.mode})`);
        await new Promise((res) => setTimeout(res, 1000));
        const pause = writer.state.pauses.slice(pausesBefore);
        const writes = writer.state.writes - writesBefore;
        results.push({
          capture,
          copySeconds: move.stats.copy.ms / 1000,
          seconds,
          lag,
          pauseMs: pause.length ? Math.max(...pause) : 0,
          attempts: move.stats.online?.pauses?.length ?? 0,
          serverPauseMs: move.stats.online?.pauses?.at(-1)?.ms ?? 0,
          rate: writes / (seconds + 1),
        });
        const r = results.at(-1);
        console.log(
          `  online move ${i + 1} (${capture}): shard-${where} -> shard-${to} in ${seconds.toFixed(1)} s (copy ${(move.stats.copy.ms / 1000).toFixed(1)} s); lag at the pause ${lag.bytes} bytes (${lag.seconds.toFixed(3)} s); write pause seen by the writer ${r.pauseMs.toFixed(0)} ms (fenced on the server ${r.serverPauseMs} ms, ${r.attempts} attempt(s)); writer ${r.rate.toFixed(0)} writes/s`,
        );
        where = to;
      }
      await writer.stop();
      const of = (c) => results.filter((r) => r.capture === c);
      for (const c of ['logical', 'trigger']) {
        const rs = of(c);
        const secs = rs.map((r) => r.seconds);
        const pauses = rs.map((r) => r.pauseMs);
        console.log(
          `${c} capture (${rs.length} moves): copy median ${median(rs.map((r) => r.copySeconds)).toFixed(1)} s; total median ${median(secs).toFixed(1)} s, max ${Math.max(...secs).toFixed(1)} s -> ${(median(secs) / fenced).toFixed(2)}x the fenced move (target <= 1.5x)`,
        );
        console.log(
          `  write pause median ${median(pauses).toFixed(0)} ms, max ${Math.max(...pauses).toFixed(0)} ms (targets < 1000 ms, < 2000 ms${c === 'trigger' ? '; trigger: < 250 ms, < 1000 ms' : ''})`,
        );
        if (c === 'logical')
          console.log(
            `  lag at the pause: median ${median(rs.map((r) => r.lag.bytes))} bytes, ${median(rs.map((r) => r.lag.seconds)).toFixed(3)} s`,
          );
      }
      const ratio = median(of('trigger').map((r) => r.seconds)) / median(of('logical').map((r) => r.seconds));
      console.log(`trigger capture total time: ${ratio.toFixed(2)}x the logical-replication move (target <= 1.5x)`);
      console.log(
        `  writer: ${writer.state.writes} writes, ${writer.state.rejections} fence rejections, ${writer.state.lifted.length} pauses ended by a lifted fence, ${writer.state.errors.length} other errors${writer.state.errors.length ? `: ${writer.state.errors.slice(0, 3).join('; ')}` : ''}`,
      );
    } finally {
      writer.state.running = false;
      await router.close();
    }
  } finally {
    await cluster.stop();
  }
}
