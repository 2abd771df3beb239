import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestCluster, mapWithShardDown, type TestCluster } from '../harness/cluster.js';
import { runCli, spawnCli } from '../harness/run-cli.js';
import { pollUntil } from '../../src/db/poll.js';

const clusters: TestCluster[] = [];
afterEach(async () => {
  await Promise.all(clusters.splice(0).map((c) => c.drop()));
});

async function setup(shards: number, files: Record<string, string>): Promise<TestCluster & { folder: string }> {
  const c = await createTestCluster({ shards });
  clusters.push(c);
  const folder = c.map.migrations;
  mkdirSync(folder, { recursive: true });
  for (const [name, sql] of Object.entries(files)) writeFileSync(path.join(folder, name), sql);
  return Object.assign(c, { folder });
}

/** A migration that waits until a session named `release-0004` is connected to its server (at most 60 s). */
const HOLD_UNTIL_RELEASED = `DO $$
BEGIN
  WHILE clock_timestamp() < now() + interval '60 s' LOOP
    -- pg_stat_activity is read once per transaction unless the snapshot is cleared
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'release-0004');
    PERFORM pg_sleep(0.02);
  END LOOP;
END $$;
`;

async function ledger(c: TestCluster, shard: number): Promise<string[]> {
  const exists = await c.sql<{ t: string | null }>(shard, "SELECT to_regclass('shardctl.migrations')::text AS t");
  if (!exists[0]!.t) return [];
  return (await c.sql<{ id: string }>(shard, 'SELECT id FROM shardctl.migrations ORDER BY id')).map((r) => r.id);
}

/** True while a migration's pg_sleep runs on the shard's database (seen from another session). */
async function sleeping(c: TestCluster, shard: number): Promise<boolean> {
  const rows = await c.sql(
    shard,
    `SELECT 1 FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%pg_sleep(30)%'`,
  );
  return rows.length > 0;
}

const BASE = {
  '0001_accounts.sql':
    'CREATE TABLE accounts (tenant_id bigint NOT NULL, id bigint NOT NULL, name text, PRIMARY KEY (tenant_id, id));\n',
  '0002_notes.sql':
    'CREATE TABLE notes (tenant_id bigint NOT NULL, id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id));\n',
  '0003_accounts_email.sql': '-- add a column\nALTER TABLE accounts ADD COLUMN email text;\n',
};

describe('shardctl migrate', () => {
  it('applies every file to every shard with a ledger, and is a no-op the second time', async () => {
    const c = await setup(3, BASE);
    const r = await runCli(['-c', c.mapFile, 'migrate', '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.shards.map((s: { status: string }) => s.status)).toEqual(['applied', 'applied', 'applied']);
    for (let i = 0; i < 3; i++) expect(await ledger(c, i)).toEqual(['0001', '0002', '0003']);
    const row = (
      await c.sql<{ name: string; checksum: string; shardctl_version: string; duration_ms: number }>(
        0,
        "SELECT * FROM shardctl.migrations WHERE id = '0003'",
      )
    )[0]!;
    expect(row.name).toBe('accounts_email');
    expect(row.checksum).toMatch(/^[0-9a-f]{64}$/);
    expect(row.shardctl_version).toBe('0.1.0');
    const again = await runCli(['-c', c.mapFile, 'migrate', '--json']);
    expect(JSON.parse(again.stdout).shards.map((s: { status: string }) => s.status)).toEqual([
      'up-to-date',
      'up-to-date',
      'up-to-date',
    ]);
    const status = await runCli(['-c', c.mapFile, 'migrate', 'status', '--check']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/3 of 3 shards at 0003/);
  });

  it('a SQL error in one file on one of four shards: that shard stops, the others finish, the report names shard, file, line; a re-run after the fix completes', async () => {
    const c = await setup(4, {
      ...BASE,
      '0004_index.sql':
        'CREATE INDEX notes_body ON notes (body);\n\nSELECT 1;\nALTER TABLE accounts ADD CONSTRAINT name_set CHECK (name IS NOT NULL);\n',
    });
    await runCli(['-c', c.mapFile, 'migrate', '--to', '0003']);
    await c.sql(2, 'INSERT INTO accounts (tenant_id, id, name) VALUES (1, 1, NULL)');
    const bad = await runCli(['-c', c.mapFile, 'migrate', '--json']);
    expect(bad.code).toBe(1);
    const doc = JSON.parse(bad.stdout);
    expect(doc.shards.map((s: { status: string }) => s.status)).toEqual(['applied', 'applied', 'failed', 'applied']);
    expect(doc.shards[2].failure).toMatchObject({ file: '0004_index.sql', pg: { code: '23514' } });
    const text = await runCli(['-c', c.mapFile, 'migrate', 'status']);
    expect(text.stdout).toMatch(/shard-2 at 0003/);
    expect(await ledger(c, 2)).toEqual(['0001', '0002', '0003']);
    // nothing of the failed file stayed: the index was in the same transaction
    expect(await c.sql(2, "SELECT 1 FROM pg_class WHERE relname = 'notes_body'")).toEqual([]);
    // a syntax error reports the line and column in the file
    const syntax = await setup(1, { '0001_bad.sql': 'CREATE TABLE a (id int);\nCREATE TABEL b (id int);\n' });
    const s = await runCli(['-c', syntax.mapFile, 'migrate']);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/shard-0: FAILED 0001_bad\.sql:2:8: syntax error at or near "TABEL" \(SQLSTATE 42601\)/);
    // fix the data and re-run: only the pending file runs, on the failed shard only
    await c.sql(2, "UPDATE accounts SET name = 'x'");
    const fixed = await runCli(['-c', c.mapFile, 'migrate', '--json']);
    expect(fixed.code).toBe(0);
    expect(
      JSON.parse(fixed.stdout).shards.map((x: { status: string; applied: { id: string }[] }) => [
        x.status,
        x.applied.map((a) => a.id),
      ]),
    ).toEqual([
      ['up-to-date', []],
      ['up-to-date', []],
      ['applied', ['0004']],
      ['up-to-date', []],
    ]);
  });

  it('reports an unreachable shard and migrates the others', async () => {
    const c = await setup(3, BASE);
    const broken = await mapWithShardDown(c, 1);
    const r = await runCli(['-c', broken, 'migrate', '--json']);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.shards[1]).toMatchObject({
      shard: 'shard-1',
      status: 'failed',
      error: { message: expect.stringMatching(/shard shard-1: cannot connect: connection refused/) },
    });
    expect(await ledger(c, 0)).toEqual(['0001', '0002', '0003']);
    const status = await runCli(['-c', broken, 'migrate', 'status', '--check']);
    expect(status.code).toBe(5);
  });

  it('two runs at once: nothing is applied twice, the second reports who holds the lock', async () => {
    // The slow file runs until a session named `release-0004` connects to its server (or for 60 s), so
    // the first run holds both shards' locks for as long as the test needs, however slow the machine.
    const c = await setup(2, { ...BASE, '0004_slow.sql': HOLD_UNTIL_RELEASED });
    const first = spawnCli(['-c', c.mapFile, 'migrate']);
    // the first run holds both shards' locks once it applies the slow file on both
    await first.waitForStderr(/applying 0004_slow\.sql/g, { count: 2 });
    const second = await runCli(['-c', c.mapFile, 'migrate', '--lock-timeout', '500']);
    const release = await Promise.all(
      c.urls.map(async (url) => {
        const client = new pg.Client({ connectionString: url, application_name: 'release-0004' });
        await client.connect();
        return client;
      }),
    );
    try {
      expect((await first.done).code).toBe(0);
    } finally {
      await Promise.all(release.map((r) => r.end()));
    }
    expect(second.code, second.stderr).toBe(6);
    expect(second.stderr).toMatch(
      /shard shard-0: migrate is locked: held by pid \d+ \(shardctl migrate from 127\.0\.0\.1\) since/,
    );
    for (let i = 0; i < 2; i++) expect(await ledger(c, i)).toEqual(['0001', '0002', '0003', '0004']);
  });

  it('refuses drift: an applied file edited, a ledger entry without a file, a file out of order', async () => {
    const c = await setup(2, BASE);
    await runCli(['-c', c.mapFile, 'migrate']);
    writeFileSync(path.join(c.folder, '0002_notes.sql'), BASE['0002_notes.sql'] + '-- edited\n');
    writeFileSync(path.join(c.folder, '0004_more.sql'), 'CREATE TABLE more (tenant_id bigint PRIMARY KEY);\n');
    const r = await runCli(['-c', c.mapFile, 'migrate']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/shard-0: drift: 0002_notes\.sql changed after it was applied/);
    expect(await ledger(c, 0)).toEqual(['0001', '0002', '0003']);
    const st = await runCli(['-c', c.mapFile, 'migrate', 'status', '--check']);
    expect(st.code).toBe(3);
    expect(st.stdout).toMatch(/CHANGED/);
    writeFileSync(path.join(c.folder, '0002_notes.sql'), BASE['0002_notes.sql']);
    rmSync(path.join(c.folder, '0003_accounts_email.sql'));
    writeFileSync(path.join(c.folder, '0000_early.sql'), 'SELECT 1;\n');
    const r2 = await runCli(['-c', c.mapFile, 'migrate']);
    expect(r2.code).toBe(3);
    expect(r2.stderr).toMatch(/0003_accounts_email was applied but its file is gone/);
    expect(r2.stderr).toMatch(/0000_early\.sql is not applied but 0003 after it is: history out of order/);
  });

  it('a failed no-transaction index build leaves an INVALID index: reported with the fix', async () => {
    const c = await setup(1, {
      ...BASE,
      '0004_dupes.sql': "INSERT INTO accounts (tenant_id, id, name) VALUES (1, 1, 'same'), (1, 2, 'same');\n",
      '0005_unique_name.sql':
        '-- shardctl:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY accounts_name_uniq ON accounts (name);\n',
    });
    const r = await runCli(['-c', c.mapFile, 'migrate', '--json']);
    expect(r.code).toBe(1);
    const f = JSON.parse(r.stdout).shards[0].failure;
    expect(f).toMatchObject({
      file: '0005_unique_name.sql',
      pg: { code: '23505' },
      invalidIndexes: ['public.accounts_name_uniq'],
    });
    expect(f.hint).toMatch(/DROP INDEX CONCURRENTLY public\.accounts_name_uniq/);
    expect(await ledger(c, 0)).toEqual(['0001', '0002', '0003', '0004']);
  });

  it('an empty folder, a missing folder and a badly named file', async () => {
    const c = await setup(1, {});
    const empty = await runCli(['-c', c.mapFile, 'migrate', 'status', '--check']);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toMatch(/no migration files/);
    expect((await runCli(['-c', c.mapFile, 'migrate'])).code).toBe(0);
    writeFileSync(path.join(c.folder, 'add_users.sql'), 'SELECT 1;');
    const bad = await runCli(['-c', c.mapFile, 'migrate']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/add_users\.sql: badly named migration: use <id>_<name>\.sql/);
    rmSync(c.folder, { recursive: true });
    const missing = await runCli(['-c', c.mapFile, 'migrate']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/migrations folder not found/);
  });

  it('SIGINT during a long migration rolls it back; the ledger stays true and a re-run completes', async () => {
    const c = await setup(2, { ...BASE, '0004_long.sql': 'CREATE TABLE long_one (id int);\nSELECT pg_sleep(30);\n' });
    const t0 = Date.now();
    const run = spawnCli(['-c', c.mapFile, 'migrate']);
    await run.waitForStderr(/applying 0004_long\.sql/g, { count: 2 });
    // SIGINT only once the long statement runs on both shards: the interrupt must cancel it, not race it.
    await pollUntil(async () => (await Promise.all([0, 1].map((i) => sleeping(c, i)))).every(Boolean), {
      timeoutMs: 20_000,
      intervalMs: 50,
      reason: 'pg_sleep of 0004_long.sql to run on both shards',
    });
    run.child.kill('SIGINT');
    const { code, stderr } = await run.done;
    expect(code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(stderr).toMatch(/interrupted/);
    for (let i = 0; i < 2; i++) {
      expect(await ledger(c, i)).toEqual(['0001', '0002', '0003']);
      expect(await c.sql(i, "SELECT 1 FROM pg_class WHERE relname = 'long_one'")).toEqual([]);
    }
    writeFileSync(path.join(c.folder, '0004_long.sql'), 'CREATE TABLE long_one (id int);\n');
    // the file changed but was never applied: no drift
    const again = await runCli(['-c', c.mapFile, 'migrate']);
    expect(again.code).toBe(0);
    for (let i = 0; i < 2; i++) expect(await ledger(c, i)).toEqual(['0001', '0002', '0003', '0004']);
  });

  it('--to and --shard select what runs; --canary goes first; a new shard gets every migration', async () => {
    const c = await setup(3, BASE);
    expect((await runCli(['-c', c.mapFile, 'migrate', '--to', '0002', '--shard', 'shard-1', 'shard-2'])).code).toBe(0);
    expect(await ledger(c, 0)).toEqual([]);
    expect(await ledger(c, 1)).toEqual(['0001', '0002']);
    expect(await ledger(c, 2)).toEqual(['0001', '0002']);
    const dry = await runCli(['-c', c.mapFile, 'migrate', '--dry-run']);
    expect(dry.stdout).toMatch(/shard-0: would apply 0001, 0002, 0003/);
    expect(dry.stdout).toMatch(/shard-1: would apply 0003/);
    expect(await ledger(c, 0)).toEqual([]);
    const bad = await runCli(['-c', c.mapFile, 'migrate', '--to', '0009']);
    expect(bad.code).toBe(2);
    // a failing canary stops the rest
    await c.sql(0, 'CREATE TABLE accounts (x int)');
    const canary = await runCli(['-c', c.mapFile, 'migrate', '--canary', 'shard-0', '--json']);
    expect(canary.code).toBe(1);
    expect(JSON.parse(canary.stdout).shards.map((s: { status: string }) => s.status)).toEqual([
      'failed',
      'skipped',
      'skipped',
    ]);
    expect(await ledger(c, 1)).toEqual(['0001', '0002']);
    await c.sql(0, 'DROP TABLE accounts');
    expect((await runCli(['-c', c.mapFile, 'migrate', '--canary', 'shard-0'])).code).toBe(0);
    for (let i = 0; i < 3; i++) expect(await ledger(c, i)).toEqual(['0001', '0002', '0003']);
    // a shard added to the map gets everything on the next run
    const grown = await createTestCluster({ shards: 1 });
    clusters.push(grown);
    const file = path.join(c.dir, 'grown.yaml');
    writeFileSync(
      file,
      readFileSync(c.mapFile, 'utf8').replace(
        /\nmigrations:/,
        `\n  - name: shard-3\n    url: ${grown.urls[0]}\nmigrations:`,
      ),
    );
    const r = await runCli(['-c', file, 'migrate', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).shards.map((s: { status: string }) => s.status)).toEqual([
      'up-to-date',
      'up-to-date',
      'up-to-date',
      'applied',
    ]);
    expect(await ledger(grown, 0)).toEqual(['0001', '0002', '0003']);
  });

  it('migrate create writes the next file', async () => {
    const c = await setup(1, BASE);
    const r = await runCli(['-c', c.mapFile, 'migrate', 'create', 'Add invoice index!', '--no-transaction']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/created .*0004_add_invoice_index\.sql/);
    expect(readFileSync(path.join(c.folder, '0004_add_invoice_index.sql'), 'utf8')).toMatch(
      /^-- shardctl:no-transaction\n/,
    );
  });
});
