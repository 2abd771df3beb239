// npm run bench -- move [rows] [online|fenced] [copy streams]
// A tenant of about 1,000,000 rows across 5 tables (the example schema). In the same run: the raw
// limit (COPY TO STDOUT piped straight into COPY FROM STDIN per table with pg-copy-streams, no checks,
// no fence), then shardctl's move of the same tenant: its copy phase and the whole move (fence, copy,
// verify, switch, cleanup; online by default, `mode: 'fenced'` with the second argument `fenced`), with
// the copy in parallel streams (the third argument, default shardctl's: 4; 1 = one target transaction).
// Targets: copy >= 1.5x the raw pipe's rows/s; whole move <= 1.3x the raw time.
import { pipeline } from 'node:stream/promises';
import copyStreams from 'pg-copy-streams';
import { moveTenant } from '../dist/index.js';
import { startBenchCluster } from './_cluster.mjs';
import { applySchema, client, loadBigTenant, MIGRATIONS, TABLES } from './_tenant.mjs';

export default async function bench(args) {
  const target = Number(args[0] ?? 1_000_000);
  const cluster = await startBenchCluster({ shards: 3, migrations: MIGRATIONS });
  try {
    await applySchema(cluster);
    // tenant 1 lives on shard-1 (1 mod 3)
    const total = await loadBigTenant(cluster.urls[1], target);
    const src = await client(cluster.urls[1]);

    // Raw limit: shard-1 -> shard-0, one COPY pipe per table, parents first (shardctl then moves the
    // same tenant to shard-2, an equally fresh target).
    const dst = await client(cluster.urls[0]);
    const t0 = performance.now();
    await dst.query('BEGIN');
    for (const t of TABLES) {
      const cols = (
        await src.query(
          `SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS c FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''`,
          [t],
        )
      ).rows[0].c;
      await pipeline(
        src.query(copyStreams.to(`COPY (SELECT ${cols} FROM ${t} WHERE tenant_id = 1) TO STDOUT (FORMAT binary)`)),
        dst.query(copyStreams.from(`COPY ${t} (${cols}) FROM STDIN (FORMAT binary)`)),
      );
    }
    await dst.query('COMMIT');
    const raw = (performance.now() - t0) / 1000;
    // The raw copy is not a move: shard-0 must not hold the tenant too when shardctl plans its move.
    await dst.query(`TRUNCATE ${TABLES.join(', ')} CASCADE`);
    await src.end();
    await dst.end();

    let copySeconds = 0;
    const t1 = performance.now();
    const options = {
      ...(args[1] === 'fenced' ? { mode: 'fenced' } : {}),
      ...(args[2] !== undefined ? { copyStreams: Number(args[2]) } : {}),
    };
    const { move } = await moveTenant(cluster.map, 1, 'shard-2', options);
    const whole = (performance.now() - t1) / 1000;
    copySeconds = move.stats.copy.ms / 1000;
    if (move.state !== 'done') throw new Error(`move ended ${move.state}`);
    console.log(`tenant rows: ${total.toLocaleString('en-US')} in ${TABLES.length} tables`);
    console.log(`  raw COPY pipe (no checks, no fence):  ${raw.toFixed(2)} s  ${(total / raw).toFixed(0)} rows/s`);
    const streams = move.stats.copy.streams ?? 1;
    const why = move.stats.copy.singleStreamReason ? ` (one stream: ${move.stats.copy.singleStreamReason})` : '';
    console.log(
      `  shardctl copy phase, ${streams} stream(s)${why}: ${copySeconds.toFixed(2)} s  ${(total / copySeconds).toFixed(0)} rows/s  -> ${(raw / copySeconds).toFixed(2)}x the raw rate (target >= 1.5x)`,
    );
    console.log(
      `  shardctl whole move (${move.mode}: copy, verify, switch, ${move.stats.online ? 'replicate, pause, ' : ''}2.5 s grace for routers, cleanup): ${whole.toFixed(2)} s -> ${(whole / raw).toFixed(2)}x the raw time (target <= 1.3x)`,
    );
    console.log(`  phases of the move (journal): ${await phases(cluster.urls[0], move.id)}`);
  } finally {
    await cluster.stop();
  }
}

/** Each journaled state of a move with the time until the next one: where the whole move's time goes. */
async function phases(catalogUrl, id) {
  const c = await client(catalogUrl);
  try {
    const { rows } = await c.query(
      `SELECT state, round(extract(epoch FROM lead(at) OVER (ORDER BY at) - at)::numeric, 2)::text AS s
         FROM shardctl.move_events WHERE move_id = $1 ORDER BY at`,
      [id],
    );
    return rows
      .filter((r) => r.s !== null)
      .map((r) => `${r.state} ${r.s} s`)
      .join(', ');
  } finally {
    await c.end();
  }
}
