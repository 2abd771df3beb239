import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createRouter,
  ensureCatalogSchema,
  ShardPools,
  writeRuleState,
  freezePlacements,
  loadShardMap,
  measureTenantSizes,
  moduloIndex,
  verifyCluster,
  type ShardMap,
} from '../../src/index.js';
import { readRuleState } from '../../src/internal.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { runCli } from '../harness/run-cli.js';

// A fleet sharded by hand over 3 shards with `tenant_id % 3` (Python's modulo), tables created by
// plain SQL, no `shardctl` schema. The common SaaS schema: the root table keyed by tenants.id, every
// child by tenant_id. A fourth database is there for the grown map.
let cluster: TestCluster;
let file3: string;
let file4: string;
let map3: ShardMap;
let map4: ShardMap;
const TENANTS = Array.from({ length: 24 }, (_, i) => i - 9); // -9 .. 14
const SCHEMA = `CREATE TABLE tenants (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE users (tenant_id bigint NOT NULL REFERENCES tenants (id), id int NOT NULL, email text, PRIMARY KEY (tenant_id, id));
`;
const INDEX = 'CREATE INDEX users_email ON users (tenant_id, email);\n';
const LATER = 'ALTER TABLE users ADD COLUMN last_seen timestamptz;\n';

async function loadTenant(shard: number, t: number, users = 2): Promise<void> {
  await cluster.sql(shard, 'INSERT INTO tenants VALUES ($1, $2)', [t, `tenant ${t}`]);
  await cluster.sql(shard, `INSERT INTO users SELECT $1, g, 'u' || g FROM generate_series(1, $2::int) g`, [t, users]);
}

const cli = (file: string, args: string[]) => runCli(['-c', file, ...args]);

beforeAll(async () => {
  cluster = await createTestCluster({ shards: 4 });
  const text = readFileSync(cluster.mapFile, 'utf8').replace(
    'shardKey: { column: tenant_id, type: bigint }',
    'shardKey: { column: tenant_id, type: bigint, columns: { tenants: id } }',
  );
  file4 = cluster.mapFile;
  writeFileSync(file4, text);
  file3 = path.join(cluster.dir, 'shards3.yaml');
  writeFileSync(file3, text.replace(/ {2}- name: shard-3\n {4}url: [^\n]+\n/, ''));
  map3 = await loadShardMap(file3);
  map4 = await loadShardMap(file4);
  const dir = map3.migrations;
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, '0001_schema.sql'), SCHEMA);
  writeFileSync(path.join(dir, '0002_index.sql'), INDEX);
  // Applied by "another tool": plain SQL, no ledger.
  for (let i = 0; i < 4; i++) await cluster.sql(i, SCHEMA + INDEX);
  for (const t of TENANTS) await loadTenant(moduloIndex(BigInt(t), 3), t);
  // Tenant 30 has a tenants row and no users: found only through tenants.id.
  await cluster.sql(0, "INSERT INTO tenants VALUES (30, 'no users yet')");
  // Tenant 5 belongs on shard-2 (5 mod 3); a stray copy of it sits on shard-0.
  await loadTenant(0, 5, 3);
}, 120_000);

afterAll(() => cluster?.drop());

describe('a fleet nobody adopted, with the map grown from 3 to 4 shards (never frozen)', () => {
  it('shardctl locate answers from the rows, never from the new rule, and names adopt', async () => {
    expect(moduloIndex(-7n, 4)).toBe(1); // the grown rule would say shard-1
    const r = await cli(file4, ['locate', '-7', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.ruleRecorded).toBe(false);
    expect(doc.locations[0]).toMatchObject({ tenant: '-7', shard: 'shard-2', ruleShard: 'shard-1', foundByData: true });
    expect(doc.warnings[0]).toMatch(/rows are on shard-2.*shardctl adopt/);
    const table = await cli(file4, ['locate', '-7', '1000']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/-7\s+│ shard-2 │ shard-1 │ rows found here/);
    // A tenant with no rows anywhere: the map's answer.
    expect(table.stdout).toMatch(/1000\s+│ shard-0 │ shard-0 │ no/);
    expect(table.stderr).toMatch(/records no placement rule/);
    expect(table.stderr).toMatch(/warning: tenant -7's rows are on shard-2/);
  });

  it('shardctl query for one tenant finds its rows, not an empty answer from the new rule', async () => {
    const r = await cli(file4, [
      'query',
      '--format',
      'csv',
      '-p',
      '-7',
      'SELECT count(*) AS n FROM users WHERE tenant_id = $1',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['n', '2']);
  });

  it('a tenant with rows on two shards is refused by name, not answered', async () => {
    const r = await cli(file3, ['locate', '5']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/tenant 5 has rows on shard-0 and shard-2/);
  });

  it('the router answers right from the rows (default), refuses under refuse, and locateVerified asks the shards', async () => {
    const router = await createRouter(map4);
    try {
      expect(router.ruleRecorded).toBe(false);
      expect(router.locate(-7)).toMatchObject({ shard: 'shard-2', ruleShard: 'shard-1', foundByData: true });
      expect(router.locate(4)).toMatchObject({ shard: 'shard-1', foundByData: true }); // 4 mod 4 = 0
      expect(router.locate(30)).toMatchObject({ shard: 'shard-0', ruleShard: 'shard-2' });
      expect(() => router.locate(5)).toThrow(/tenant 5 has rows on shard-0 and shard-2/);
      expect((await router.locateVerified(-7)).shard).toBe('shard-2');
      const rows = await router
        .db<{ users: { tenant_id: string } }>(-7)
        .selectFrom('users')
        .selectAll()
        .where('tenant_id', '=', '-7')
        .execute();
      expect(rows).toHaveLength(2);
    } finally {
      await router.close();
    }
    const strict = await createRouter(map4, { unrecordedRule: 'refuse' });
    try {
      expect(() => strict.locate(-7)).toThrow(expect.objectContaining({ code: 'RULE_UNRECORDED' }));
      expect(() => strict.db(-7)).toThrow(
        expect.objectContaining({ code: 'RULE_UNRECORDED', hint: expect.stringMatching(/shardctl adopt/) }),
      );
      expect(await strict.locateVerified(-7)).toMatchObject({ shard: 'shard-2', foundByData: true });
      expect(await strict.locateVerified(1000)).toMatchObject({ shard: 'shard-0', override: false });
      await expect(strict.locateVerified(5)).rejects.toThrow(/two shards|shard-0 and shard-2/);
    } finally {
      await strict.close();
    }
  });
});

describe('a first write by migrate or a move with the grown map', () => {
  it('does not take the grown rule as the recorded one when the catalog shard contradicts it', async () => {
    const pools = await ShardPools.open(map4);
    try {
      await pools.withShard('shard-0', async (c) => {
        await ensureCatalogSchema(c);
        await writeRuleState(c, map4, { ifAbsent: true }); // what migrate and moves do on first write
        expect(await readRuleState(c)).toBeUndefined();
      });
      const router = await createRouter(map4);
      expect(router.ruleRecorded).toBe(false);
      expect(router.locate(-7).shard).toBe('shard-2');
      await router.close();
    } finally {
      await pools.withShard('shard-0', (c) => c.query('DROP SCHEMA shardctl CASCADE'));
      await pools.close();
    }
  });
});

describe('shardctl adopt', () => {
  it('finds the misplaced tenant, lists it with its shard and rows, refuses and writes nothing', async () => {
    const r = await cli(file3, ['adopt', '--json']);
    expect(r.code).toBe(7);
    const doc = JSON.parse(r.stdout);
    expect(doc.refused).toBe(true);
    expect(doc.misplaced).toEqual([
      {
        tenant: '5',
        shard: 'shard-0',
        owner: 'shard-2',
        rows: 4,
        tables: { 'public.tenants': 1, 'public.users': 3 },
      },
    ]);
    const table = await cli(file3, ['adopt']);
    expect(table.code).toBe(7);
    expect(table.stdout).toMatch(/1 misplaced tenant/);
    expect(table.stdout).toMatch(/5\s+│ shard-0\s+│ shard-2\s+│ 4/);
    expect(table.stderr).toMatch(/adopt refused: nothing was written/);
    for (let i = 0; i < 4; i++)
      expect(await cluster.sql(i, "SELECT to_regclass('shardctl.rule_state') AS t")).toEqual([{ t: null }]);
  });

  it('a map whose key column no table has is refused: the placement check would prove nothing', async () => {
    const wrong = path.join(cluster.dir, 'wrong-key.yaml');
    writeFileSync(
      wrong,
      readFileSync(file3, 'utf8').replace(
        'column: tenant_id, type: bigint, columns: { tenants: id }',
        'column: account_id, type: bigint',
      ),
    );
    const r = await cli(wrong, ['adopt', '--dry-run']);
    expect(r.code).toBe(7);
    expect(r.stdout).toMatch(/no tenant table found on any shard \(no table has the column account_id\)/);
  });

  it('the grown map is refused too: most tenants are not where its rule says', async () => {
    const r = await cli(file4, ['adopt', '--dry-run', '--json']);
    expect(r.code).toBe(7);
    const doc = JSON.parse(r.stdout);
    expect(doc.misplaced.map((m: { tenant: string }) => m.tenant)).toContain('-7');
  });

  it('after the fix, --dry-run checks and writes nothing; then adopt records the rule and the baseline', async () => {
    await cluster.sql(0, 'DELETE FROM users WHERE tenant_id = 5');
    await cluster.sql(0, 'DELETE FROM tenants WHERE id = 5');
    const dry = await cli(file3, ['adopt', '--baseline', '0002', '--dry-run']);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/dry run: nothing was written/);
    expect(await cluster.sql(0, "SELECT to_regclass('shardctl.rule_state') AS t")).toEqual([{ t: null }]);

    const r = await cli(file3, ['adopt', '--baseline', '0002']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/rule: modulo over 3 shards \[shard-0, shard-1, shard-2\]/);
    expect(r.stdout).toMatch(
      /shard-1: tenant tables public\.tenants by id, public\.users by tenant_id; shardctl schema steps [\d, ]+ installed; baseline recorded: 0001, 0002/,
    );
    expect(r.stdout).toMatch(/adopted: the catalog records the rule/);
    for (let i = 0; i < 3; i++)
      expect((await cluster.sql(i, 'SELECT id FROM shardctl.migrations ORDER BY id')).map((x) => x.id)).toEqual([
        '0001',
        '0002',
      ]);
    const rule = await cluster.sql<{ rule: { shards: string[] } }>(0, 'SELECT rule FROM shardctl.rule_state');
    expect(rule[0]!.rule.shards).toEqual(['shard-0', 'shard-1', 'shard-2']);
  });

  it('running it again is harmless and says so', async () => {
    const r = await cli(file3, ['adopt', '--baseline', '0002', '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ alreadyAdopted: true, ruleRecorded: false, refused: false });
    expect(doc.shards[0]).toMatchObject({ catalogSteps: [], baselineRecorded: [], baselineAlready: ['0001', '0002'] });
    const text = await cli(file3, ['adopt']);
    expect(text.stdout).toMatch(/already adopted/);
  });

  it('migrate then applies only the later files', async () => {
    writeFileSync(path.join(map3.migrations, '0003_last_seen.sql'), LATER);
    const r = await cli(file3, ['migrate']);
    expect(r.code, r.stderr).toBe(0);
    for (let i = 0; i < 3; i++) {
      expect((await cluster.sql(i, 'SELECT id FROM shardctl.migrations ORDER BY id')).map((x) => x.id)).toEqual([
        '0001',
        '0002',
        '0003',
      ]);
      expect(
        await cluster.sql(
          i,
          "SELECT count(*)::int AS n FROM information_schema.columns WHERE column_name = 'last_seen'",
        ),
      ).toEqual([{ n: 1 }]);
    }
  });

  it('with the rule recorded, locate is fast and certain, the SQL function agrees, and the grown map is refused', async () => {
    const r = await cli(file3, ['locate', '-7', '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ ruleRecorded: true, warnings: [], locations: [{ shard: 'shard-2' }] });
    expect(await cluster.sql(0, 'SELECT shardctl.locate(-7) AS s')).toEqual([{ s: 'shard-2' }]);
    const grown = await cli(file4, ['locate', '-7']);
    expect(grown.code).toBe(1);
    expect(grown.stderr).toMatch(/differs from the rule the catalog records/);
    await expect(createRouter(map4)).rejects.toMatchObject({ code: 'RULE_CHANGED' });
  });
});

describe('per-table tenant columns (tenants.id beside users.tenant_id)', () => {
  it('verify, tenant sizes and freeze read each table by its own column', async () => {
    const report = await verifyCluster(map3, { only: ['misplaced-rows', 'schema'] });
    expect(report.findings).toEqual([]);
    // A stray tenants row of tenant 4 (shard-1's) on shard-2 is found through tenants.id.
    await cluster.sql(2, "INSERT INTO tenants VALUES (4000000001, 'stray')"); // 4000000001 mod 3 = 2: in place
    await cluster.sql(2, "INSERT INTO tenants VALUES (40, 'stray')"); // 40 mod 3 = 1: misplaced
    const bad = await verifyCluster(map3, { only: ['misplaced-rows'] });
    expect(
      bad.findings.map((f) => [f.kind, f.shard, f.tenant, f.table ?? (f.details as { tables: object }).tables]),
    ).toEqual([['misplaced-rows', 'shard-2', '40', { 'public.tenants': 1 }]]);
    await cluster.sql(2, 'DELETE FROM tenants WHERE id IN (40, 4000000001)');

    const sizes = await measureTenantSizes(map3);
    const shard0 = sizes.find((s) => s.shard === 'shard-0')!;
    expect(shard0.status).toBe('ok');
    const tenants = shard0.status === 'ok' ? shard0.value.tenants : [];
    // Tenant 30: one tenants row and no users; tenant -9: one tenants row and two users.
    expect(tenants.find((t) => t.tenant === '30')?.rows).toBe(1);
    expect(tenants.find((t) => t.tenant === '-9')?.rows).toBe(3);

    const frozen = await freezePlacements(map3);
    expect(frozen.perShard['shard-0']).toBe(TENANTS.filter((t) => moduloIndex(BigInt(t), 3) === 0).length + 1);
    expect(await cluster.sql(0, "SELECT shard FROM shardctl.placements WHERE tenant = '30'")).toEqual([
      { shard: 'shard-0' },
    ]);
    // Frozen: the grown map is safe now, and the SQL function still answers from the directory.
    const router = await createRouter(map4);
    try {
      expect(router.locate(-7).shard).toBe('shard-2');
      expect(router.locate(30).shard).toBe('shard-0');
    } finally {
      await router.close();
    }
    expect(await cluster.sql(0, 'SELECT shardctl.locate(30) AS s, shardctl.locate(-7) AS t')).toEqual([
      { s: 'shard-0', t: 'shard-2' },
    ]);
  });
});
