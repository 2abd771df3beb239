import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureCatalogSchema, setPlacement, ShardPools, verifyCluster, type Finding } from '../../src/index.js';
import { createTestCluster, noLogicalReplication, type TestCluster } from '../harness/cluster.js';
import { runCli } from '../harness/run-cli.js';
import { pollUntil } from '../../src/db/poll.js';
import { applyExampleSchema, EXAMPLE_MIGRATIONS, insertTenant } from '../harness/schema.js';

/** External-server mode only: a server without wal_level = logical can hold no logical slot. */
const NO_LOGICAL = await noLogicalReplication();
if (NO_LOGICAL) console.warn(`${import.meta.filename}: the leftover test makes no logical slot: ${NO_LOGICAL}`);

let cluster: TestCluster;
// modulo over 3 shards: tenant t lives on shard t % 3
const TENANTS = [1, 2, 3, 4, 5, 6];

beforeAll(async () => {
  cluster = await createTestCluster({ shards: 3, migrations: EXAMPLE_MIGRATIONS, reference: ['plans'] });
  await applyExampleSchema(cluster);
  for (const t of TENANTS) await insertTenant(cluster, t % 3, t);
});
afterAll(() => cluster.drop());

const kinds = (fs: Finding[]) => fs.map((f) => f.kind);

async function writes(): Promise<number[]> {
  return Promise.all(
    cluster.urls.map(async (_, i) => {
      const [r] = await cluster.sql<{ n: string }>(
        i,
        'SELECT (sum(n_tup_ins + n_tup_upd + n_tup_del) + (SELECT count(*) FROM pg_namespace))::text AS n FROM pg_stat_user_tables',
      );
      return Number(r!.n);
    }),
  );
}

/**
 * Waits until no other session is connected to any shard database. A backend flushes its statistics
 * before it leaves pg_stat_activity, so after this the counters include everything those sessions did.
 */
async function sessionsEnded(): Promise<void> {
  await pollUntil(
    async () => {
      const counts = await Promise.all(
        cluster.urls.map(async (_, i) => {
          const [r] = await cluster.sql<{ n: string }>(
            i,
            `SELECT count(*)::text AS n FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
          );
          return Number(r!.n);
        }),
      );
      return counts.every((n) => n === 0);
    },
    { timeoutMs: 10_000, intervalMs: 50, reason: 'every other session on the shards to end' },
  );
}

describe('verify', () => {
  it('reports nothing on a clean cluster, exits 0, and writes nothing (no shardctl schema created)', async () => {
    await sessionsEnded();
    const before = await writes();
    const r = await runCli(['-c', cluster.mapFile, 'verify']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/verify: 3 shard\(s\) consistent/);
    for (let i = 0; i < 3; i++)
      expect(await cluster.sql(i, "SELECT 1 FROM pg_namespace WHERE nspname = 'shardctl'")).toEqual([]);
    // statistics are flushed as sessions end: wait for verify's sessions to be gone before comparing
    await sessionsEnded();
    expect(await writes()).toEqual(before);
  });

  it('finds misplaced rows and a tenant on two shards, computed by the rule on each shard', async () => {
    // tenant 4 belongs on shard-1; copy two of its users onto shard-0 as well
    await cluster.sql(0, "INSERT INTO tenants (tenant_id, name, plan_id) VALUES (4, 'stray', 'free')");
    await cluster.sql(0, "INSERT INTO users (tenant_id, id, email) VALUES (4, 1, 'a'), (4, 2, 'b')");
    try {
      const report = await verifyCluster(cluster.map);
      expect(report.ok).toBe(false);
      const misplaced = report.findings.filter((f) => f.kind === 'misplaced-rows');
      expect(misplaced).toHaveLength(1);
      expect(misplaced[0]).toMatchObject({
        shard: 'shard-0',
        tenant: '4',
        details: { owner: 'shard-1', by: 'rule', rows: 3, tables: { 'public.tenants': 1, 'public.users': 2 } },
      });
      expect(report.findings.find((f) => f.kind === 'tenant-on-two-shards')).toMatchObject({
        tenant: '4',
        details: { shards: ['shard-1', 'shard-0'] },
      });
      const cli = await runCli(['-c', cluster.mapFile, 'verify', '--json']);
      expect(cli.code).toBe(1);
      expect(JSON.parse(cli.stdout).findings.map((f: Finding) => f.kind)).toEqual(
        expect.arrayContaining(['misplaced-rows', 'tenant-on-two-shards']),
      );
      const one = await verifyCluster(cluster.map, { tenant: '4' });
      expect(kinds(one.findings)).toEqual(['misplaced-rows', 'tenant-on-two-shards']);
    } finally {
      await cluster.sql(0, 'DELETE FROM users WHERE tenant_id = 4');
      await cluster.sql(0, 'DELETE FROM tenants WHERE tenant_id = 4');
    }
  });

  it('judges moved tenants by the directory, and flags entries naming unknown shards', async () => {
    const pools = await ShardPools.open(cluster.map);
    try {
      await pools.withShard('shard-0', async (c) => {
        await ensureCatalogSchema(c);
        // tenant 5 (rule: shard-2) recorded as moved to shard-0, but its rows are still on shard-2
        await setPlacement(c, '5', 'shard-0', { ruleShard: 'shard-2' });
        await setPlacement(c, '999', 'shard-9', { ruleShard: 'shard-0' });
      });
      const report = await verifyCluster(cluster.map);
      expect(report.findings.find((f) => f.kind === 'misplaced-rows')).toMatchObject({
        shard: 'shard-2',
        tenant: '5',
        details: { owner: 'shard-0', by: 'directory' },
      });
      expect(report.findings.find((f) => f.kind === 'directory-unknown-shard')).toMatchObject({
        tenant: '999',
        message: expect.stringContaining('"shard-9", which is not in the map'),
      });
    } finally {
      await pools.withShard('shard-0', (c) => c.query('DELETE FROM shardctl.placements'));
      await pools.close();
    }
  });

  it('spells out schema drift and missing tables', async () => {
    await cluster.sql(2, 'ALTER TABLE users ADD COLUMN nickname text');
    await cluster.sql(2, 'ALTER TABLE projects ALTER COLUMN archived SET DEFAULT true');
    await cluster.sql(1, 'CREATE TABLE audit_log (tenant_id bigint, what text)');
    try {
      const report = await verifyCluster(cluster.map);
      const drift = report.findings.filter((f) => f.kind === 'schema-drift');
      expect(drift.map((f) => [f.shard, f.table])).toEqual([
        ['shard-2', 'public.projects'],
        ['shard-2', 'public.users'],
      ]);
      expect(drift[0]!.message).toContain(
        'column archived is "boolean not null default true", expected "boolean not null default false"',
      );
      expect(drift[1]!.message).toContain('extra column nickname (text)');
      expect(report.findings.find((f) => f.kind === 'table-missing')).toMatchObject({
        table: 'public.audit_log',
        details: { missing: ['shard-0', 'shard-2'] },
      });
    } finally {
      await cluster.sql(2, 'ALTER TABLE users DROP COLUMN nickname');
      await cluster.sql(2, 'ALTER TABLE projects ALTER COLUMN archived SET DEFAULT false');
      await cluster.sql(1, 'DROP TABLE audit_log');
    }
  });

  it('finds migration drift: a changed file, a ledger entry without a file, ledgers that differ', async () => {
    const pools = await ShardPools.open(cluster.map);
    try {
      for (const s of ['shard-0', 'shard-1']) await pools.withShard(s, (c) => ensureCatalogSchema(c));
      const { readMigrationFiles } = await import('../../src/catalog/ledger.js');
      const files = (await readMigrationFiles(EXAMPLE_MIGRATIONS))!;
      for (const [i, f] of files.entries()) {
        const name = f.file.replace(/^\d+_/, '').replace(/\.sql$/, '');
        await cluster.sql(
          0,
          'INSERT INTO shardctl.migrations (id, name, checksum, duration_ms, shardctl_version) VALUES ($1, $2, $3, 1, $4)',
          [f.id, name, i === 2 ? 'deadbeef'.repeat(8) : f.checksum, 'test'],
        );
        if (i < 5)
          await cluster.sql(
            1,
            'INSERT INTO shardctl.migrations (id, name, checksum, duration_ms, shardctl_version) VALUES ($1, $2, $3, 1, $4)',
            [f.id, name, f.checksum, 'test'],
          );
      }
      await cluster.sql(
        1,
        "INSERT INTO shardctl.migrations (id, name, checksum, duration_ms, shardctl_version) VALUES ('9999', 'gone', 'x', 1, 'test')",
      );
      const report = await verifyCluster(cluster.map);
      const drift = report.findings.filter((f) => f.kind === 'migration-drift').map((f) => f.message);
      expect(drift).toContainEqual(
        expect.stringMatching(/^shard-0: migration 0003_create_users\.sql changed after it was applied/),
      );
      expect(drift).toContainEqual('shard-1: migration 9999_gone is in the ledger but its file is gone');
      expect(drift).toContainEqual(
        expect.stringMatching(
          /^migration ledgers differ between shards: shard-0 at 0007 \(7 applied\), shard-1 at 9999 \(6 applied\)/,
        ),
      );
    } finally {
      for (const i of [0, 1]) await cluster.sql(i, 'DROP SCHEMA shardctl CASCADE');
      await pools.close();
    }
  });

  it('finds leftover replication objects and INVALID indexes, and --fix repairs them only with --yes', async () => {
    // Without wal_level = logical (external servers only) no logical slot can be made; a publication can.
    if (!NO_LOGICAL) await cluster.sql(1, "SELECT pg_create_logical_replication_slot('shardctl_move_77', 'pgoutput')");
    await cluster.sql(1, 'CREATE PUBLICATION shardctl_move_77_pub');
    await cluster.sql(
      2,
      "INSERT INTO tenants (tenant_id, name, plan_id) VALUES (101, 'dup', 'free'), (104, 'dup', 'free')",
    );
    await cluster.sql(2, 'CREATE UNIQUE INDEX CONCURRENTLY tenants_name_uniq ON tenants (name)').catch(() => undefined);
    try {
      const report = await verifyCluster(cluster.map);
      expect(report.findings.filter((f) => f.kind === 'replication-leftover').map((f) => f.message)).toEqual([
        ...(NO_LOGICAL
          ? []
          : [expect.stringMatching(/^shard-1: replication-slot shardctl_move_77 retains \d+ bytes of WAL$/)]),
        'shard-1: publication shardctl_move_77_pub',
      ]);
      const invalid = report.findings.find((f) => f.kind === 'invalid-index')!;
      expect(invalid).toMatchObject({
        shard: 'shard-2',
        table: 'public.tenants',
        fix: { sql: 'DROP INDEX CONCURRENTLY IF EXISTS "public"."tenants_name_uniq"' },
      });
      const refused = await runCli(['-c', cluster.mapFile, 'verify', '--fix']);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('pass --yes');
      expect(await cluster.sql(1, "SELECT 1 FROM pg_publication WHERE pubname = 'shardctl_move_77_pub'")).toHaveLength(
        1,
      );
      if (!NO_LOGICAL)
        expect(
          await cluster.sql(1, "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'shardctl_move_77'"),
        ).toHaveLength(1);
      const fixed = await runCli(['-c', cluster.mapFile, 'verify', '--fix', '--yes']);
      expect(fixed.stdout).toContain(`fixes (${NO_LOGICAL ? 2 : 3}):`);
      if (!NO_LOGICAL) expect(fixed.stderr).toMatch(/fixed: shard-1: drop replication-slot shardctl_move_77/);
      expect(fixed.stderr).toMatch(/fixed: shard-1: drop publication shardctl_move_77_pub/);
      expect(await cluster.sql(1, "SELECT 1 FROM pg_publication WHERE pubname = 'shardctl_move_77_pub'")).toEqual([]);
      expect(await cluster.sql(1, "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'shardctl_move_77'")).toEqual(
        [],
      );
      expect(await cluster.sql(2, "SELECT 1 FROM pg_class WHERE relname = 'tenants_name_uniq'")).toEqual([]);
      const after = await verifyCluster(cluster.map);
      expect(kinds(after.findings)).toEqual([]);
    } finally {
      await cluster.sql(
        1,
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'shardctl_move_77'",
      );
      await cluster.sql(1, 'DROP PUBLICATION IF EXISTS shardctl_move_77_pub');
      await cluster.sql(2, 'DELETE FROM tenants WHERE tenant_id IN (101, 104)');
    }
  });

  it('reports rows without a shard key', async () => {
    await cluster.sql(0, 'CREATE TABLE notes (tenant_id bigint, body text)');
    for (const i of [1, 2]) await cluster.sql(i, 'CREATE TABLE notes (tenant_id bigint, body text)');
    await cluster.sql(0, "INSERT INTO notes VALUES (NULL, 'orphan'), (3, 'ok')");
    try {
      const report = await verifyCluster(cluster.map);
      expect(report.findings).toEqual([
        expect.objectContaining({
          kind: 'rows-without-key',
          shard: 'shard-0',
          table: 'public.notes',
          details: { rows: 1 },
        }),
      ]);
    } finally {
      for (const i of [0, 1, 2]) await cluster.sql(i, 'DROP TABLE notes');
    }
  });

  it('names an unreachable shard', async () => {
    const { writeFile } = await import('node:fs/promises');
    const { readFileSync } = await import('node:fs');
    const file = `${cluster.dir}/broken.yaml`;
    // shard-2's URL only: in external-server mode every shard shares one server's port.
    const dead = new URL(cluster.urls[2]!);
    dead.port = '1';
    await writeFile(file, readFileSync(cluster.mapFile, 'utf8').replace(cluster.urls[2]!, dead.toString()));
    const r = await runCli(['-c', file, 'verify', '--json', '--timeout', '2000']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).findings).toContainEqual(
      expect.objectContaining({ kind: 'unreachable', shard: 'shard-2' }),
    );
  });
});

describe('verify on a hash-placed cluster', () => {
  it('evaluates bucket ownership on the server for bigint, text and uuid keys', async () => {
    const { compileRule, parseTenant } = await import('../../src/index.js');
    for (const keyType of ['bigint', 'text', 'uuid'] as const) {
      const c = await createTestCluster({ shards: 2, strategy: 'hash', buckets: 16, keyType });
      try {
        const type = keyType === 'bigint' ? 'bigint' : keyType;
        for (const i of [0, 1]) await c.sql(i, `CREATE TABLE items (tenant_id ${type} NOT NULL, n int)`);
        const place = compileRule(c.map);
        const values =
          keyType === 'bigint'
            ? ['1', '-77', '9000000000']
            : keyType === 'text'
              ? ['acme', 'ünïcode', '']
              : [
                  '6f1c7e1a-0000-4000-8000-000000000001',
                  '6f1c7e1a-0000-4000-8000-000000000002',
                  '6f1c7e1a-0000-4000-8000-000000000003',
                ];
        for (const v of values) {
          const idx = place(parseTenant(v, keyType)).shard.index;
          await c.sql(idx, 'INSERT INTO items VALUES ($1, 1)', [v]);
        }
        expect((await verifyCluster(c.map)).findings).toEqual([]);
        const stray = values[0]!;
        const wrong = 1 - place(parseTenant(stray, keyType)).shard.index;
        await c.sql(wrong, 'INSERT INTO items VALUES ($1, 2)', [stray]);
        const report = await verifyCluster(c.map);
        expect(kinds(report.findings)).toEqual(['misplaced-rows', 'tenant-on-two-shards']);
        expect(report.findings[0]).toMatchObject({ shard: `shard-${wrong}`, tenant: stray });
      } finally {
        await c.drop();
      }
    }
  });
});
