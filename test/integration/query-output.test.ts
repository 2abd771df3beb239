import { spawn } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createScratchDatabase, createTestCluster, type TestCluster } from '../harness/cluster.js';
import { runCli } from '../harness/run-cli.js';

// `shardctl query` output as users get it from the CLI process: composite values, arrays of them and
// domains in --format json and ndjson equal PostgreSQL's own to_jsonb of the same rows (objects keyed
// by the type's attributes, exact numbers, nested arrays); csv stays PostgreSQL's text. And a streamed
// export keeps its memory whatever its size, printing every row.
let cluster: TestCluster;
let single: { url: string; drop(): Promise<void> };
let db: pg.Client;

const SCHEMA = [
  'CREATE TYPE pair AS (n int8, label text, amounts numeric[])',
  'CREATE TYPE outer_t AS (p pair, ok boolean)',
  'CREATE DOMAIN cents AS numeric(14, 2)',
  `CREATE TABLE things (tenant_id bigint NOT NULL, id int NOT NULL, p pair, ps pair[], o outer_t, m cents, tags text[],
     PRIMARY KEY (tenant_id, id))`,
];

const LABELS = ['plain', 'a "quoted", (paren) \\ back', '', null, 'spaces  and\ttab', 'ünï'];

async function load(url: string, keep: (t: number) => boolean): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    for (const s of SCHEMA) await c.query(s);
    for (let t = 1; t <= 6; t++) {
      if (!keep(t)) continue;
      for (let id = 1; id <= 3; id++) {
        const label = LABELS[(t + id) % LABELS.length];
        await c.query(
          `INSERT INTO things VALUES ($1, $2::int, ROW($3::int8 * 1000000000000, $4::text, ARRAY[$5::numeric, NULL])::pair,
             ARRAY[ROW($2::int, $4::text, '{}')::pair, NULL, ROW(NULL, NULL, NULL)::pair],
             ROW(ROW(9223372036854775807, 'in', ARRAY[0.1])::pair, $2::int % 2 = 0)::outer_t, $6, $7)`,
          [t, id, t * 10 + id, label, `${id}.${t}0`, id === 2 ? null : `${t}${id}.05`, [label, 'x,y', null]],
        );
      }
    }
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  cluster = await createTestCluster({ shards: 2 });
  single = await createScratchDatabase();
  await load(single.url, () => true);
  await Promise.all(cluster.urls.map((url, i) => load(url, (t) => t % 2 === i)));
  db = new pg.Client({ connectionString: single.url });
  await db.connect();
});
afterAll(async () => {
  await db?.end();
  await single?.drop();
  await cluster?.drop();
});

/** PostgreSQL's own JSON of the rows of `sql`, one document per row (parsed). */
async function postgresJson(sql: string): Promise<unknown[]> {
  const r = await db.query<{ j: string }>({ text: `SELECT to_jsonb(q)::text AS j FROM (${sql}) q`, types: RAW });
  return r.rows.map((x) => JSON.parse(x.j));
}
const RAW = { getTypeParser: () => (v: string) => v } as never;

const ORDERED = 'SELECT tenant_id, id, p, ps, o, m, tags FROM things ORDER BY tenant_id, id';

describe('JSON output of composite values', () => {
  it('ndjson of an ordered (streamed) query equals to_jsonb of the same rows', async () => {
    const r = await runCli(['-c', cluster.mapFile, '--timeout', '30s', 'query', '--format', 'ndjson', ORDERED]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const got = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(got).toHaveLength(18);
    expect(got).toEqual(await postgresJson(ORDERED));
    // int8 inside a composite inside a composite is written exactly (no float on the way)
    expect(r.stdout).toContain('"n":9223372036854775807');
  });

  it('json (collected) of the same query, and ndjson of an unordered (appended) one, equal to_jsonb', async () => {
    const json = await runCli(['-c', cluster.mapFile, '--timeout', '30s', 'query', '--format', 'json', ORDERED]);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual(await postgresJson(ORDERED));
    const unordered = 'SELECT id, tenant_id, ps, m FROM things';
    const r = await runCli(['-c', cluster.mapFile, '--timeout', '30s', 'query', '--format', 'ndjson', unordered]);
    expect(r.code, r.stderr).toBe(0);
    const key = (x: { tenant_id: number; id: number }) => x.tenant_id * 100 + x.id;
    const got = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    const want = (await postgresJson(unordered)) as { tenant_id: number; id: number }[];
    expect(got.sort((x, y) => key(x) - key(y))).toEqual(want.sort((x, y) => key(x) - key(y)));
  });

  it('anonymous records come out as arrays of their fields’ text; csv stays PostgreSQL’s text', async () => {
    const sql = 'SELECT id, ROW(id, (p).label, NULL) AS r FROM things WHERE tenant_id = 2 ORDER BY id';
    const json = await runCli(['-c', cluster.mapFile, '--timeout', '30s', 'query', '--format', 'ndjson', sql]);
    expect(json.code, json.stderr).toBe(0);
    const texts = (await db.query({ text: sql, rowMode: 'array', types: RAW } as never)) as unknown as {
      rows: [string, string][];
    };
    const lines = json.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.id)).toEqual([1, 2, 3]);
    expect(lines[0].r[0]).toBe('1');
    expect(lines[0].r[2]).toBeNull();
    const labels = (
      await db.query<{ l: string | null }>('SELECT (p).label AS l FROM things WHERE tenant_id = 2 ORDER BY id')
    ).rows;
    expect(lines.map((l) => l.r[1])).toEqual(labels.map((x) => x.l));
    const csv = await runCli(['-c', cluster.mapFile, '--timeout', '30s', 'query', '--format', 'csv', ORDERED]);
    expect(csv.code, csv.stderr).toBe(0);
    const want = (await db.query({ text: ORDERED, rowMode: 'array', types: RAW } as never)) as unknown as {
      rows: (string | null)[][];
    };
    const cell = (v: string | null) =>
      v === null ? '' : /[",\n\r]/.test(v) || v === '' ? `"${v.replace(/"/g, '""')}"` : v;
    expect(csv.stdout.split('\n').slice(1, -1)).toEqual(want.rows.map((row) => row.map(cell).join(',')));
    expect(texts.rows).toHaveLength(3);
  });
});

const MAIN = path.resolve(import.meta.dirname, '..', '..', 'dist', 'bundle', 'shardctl.mjs');

/** Runs the built CLI in a process of its own; returns its stdout's line count, last line and peak RSS. */
function exportRun(
  args: string[],
): Promise<{ code: number; lines: number; last: string; maxRssKb: number; err: string }> {
  // The CLI's entry (as bin/shardctl does) plus a report of the process's own peak RSS on fd 3.
  const script = `import { setFlagsFromString } from 'node:v8'; import { writeSync } from 'node:fs';
setFlagsFromString('--liftoff-only');
const { main } = await import(${JSON.stringify(MAIN)});
process.on('exit', () => writeSync(3, String(process.resourceUsage().maxRSS)));
process.exitCode = await main(['node', 'shardctl', ...process.argv.slice(1)]);`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, ...args], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    let lines = 0;
    let tail = '';
    let err = '';
    let rss = '';
    child.stdout!.on('data', (d: Buffer) => {
      for (const b of d) if (b === 10) lines++;
      tail = (tail + d.toString('utf8')).slice(-200);
    });
    child.stderr!.on('data', (d) => (err += d));
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (d) => (rss += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, lines, last: tail.trimEnd().split('\n').pop() ?? '', maxRssKb: Number(rss), err });
    });
  });
}

describe('a streamed export through the CLI', () => {
  const SMALL = 40_000;
  const BIG = 400_000;

  beforeAll(async () => {
    for (const [i, url] of cluster.urls.entries()) {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query(
        'CREATE TABLE big (tenant_id bigint NOT NULL, id int NOT NULL, note text NOT NULL, PRIMARY KEY (tenant_id, id))',
      );
      // tenant t lives on shard t % 2; ids are unique across the fleet
      await c.query(
        `INSERT INTO big SELECT (g % 500) * 2 + $1, g * 2 + $1, 'row number ' || (g * 2 + $1) FROM generate_series(0, $2::int - 1) g`,
        [i, BIG / 2],
      );
      await c.query('ANALYZE big');
      await c.end();
    }
  }, 120_000);

  it('keeps its peak RSS whatever its size, and prints every row exactly once, in order', async () => {
    const sql = (n: number) => `SELECT id, tenant_id, note FROM big WHERE id < ${n} ORDER BY id`;
    const small = await exportRun([
      'query',
      '-c',
      cluster.mapFile,
      '--timeout',
      '30s',
      '--format',
      'ndjson',
      sql(SMALL),
    ]);
    const big = await exportRun(['query', '-c', cluster.mapFile, '--timeout', '30s', '--format', 'ndjson', sql(BIG)]);
    expect(small.code, small.err).toBe(0);
    expect(big.code, big.err).toBe(0);
    expect(small.lines).toBe(SMALL);
    expect(big.lines).toBe(BIG);
    const lastId = BIG - 1;
    expect(JSON.parse(big.last)).toEqual({
      id: lastId,
      tenant_id: (Math.floor(lastId / 2) % 500) * 2 + (lastId % 2),
      note: `row number ${lastId}`,
    });
    // Ten times the rows: holding them would add far more than this (400,000 rows are ~60 MB as
    // JavaScript arrays of strings, ~25 MB as text); a bounded stream's peak moves by GC noise only.
    expect(big.maxRssKb - small.maxRssKb).toBeLessThan(25_000);
  }, 300_000);
});
