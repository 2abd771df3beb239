import type { ShardMap } from '../config/shard-map.js';
import { ensureCatalogSchema } from '../catalog/catalog-schema.js';
import { readLedger } from '../catalog/ledger.js';
import { TENANT_TABLES_SQL, tenantTablesParams } from '../catalog/user-tables.js';
import {
  FROZEN,
  assertRuleUnchanged,
  readRuleState,
  ruleFingerprint,
  summariseRule,
  writeRuleState,
} from '../catalog/rule-state.js';
import { withAdvisoryLock } from '../db/advisory-lock.js';
import { forEachShard } from '../db/for-each-shard.js';
import { LockKey } from '../db/lock-keys.js';
import { ShardPools } from '../db/shard-pools.js';
import { withTransaction } from '../db/transaction.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { readMigrationFolder, type MigrationFile } from '../migrate/migration-files.js';
import { SHARDCTL_VERSION } from '../version.js';
import { verifyCluster, type Finding } from '../verify/verify-cluster.js';

/** Options of {@link adoptFleet}. */
export interface AdoptOptions {
  /** Record the migration files up to this id (inclusive) as applied on every shard. */
  baseline?: string;
  /** Only check; write nothing. */
  dryRun?: boolean;
  /** Connection timeout per shard in ms. Default 5000. */
  timeoutMs?: number;
}

/** A tenant whose rows are not on the shard the map's rule names. */
export interface MisplacedTenant {
  tenant: string;
  /** Shard holding the rows. */
  shard: string;
  /** Shard the rule (or the directory) names. */
  owner: string;
  rows: number;
  /** Rows per table. */
  tables: Record<string, number>;
}

/** What adopt wrote (or, on a dry run or a refusal, would have written) on one shard. */
export interface AdoptShard {
  shard: string;
  /** Tenant tables found, each with the column that holds its tenant. */
  tables: { table: string; keyColumn: string }[];
  /** Internal-schema steps applied now (empty when already current, or nothing was written). */
  catalogSteps: number[];
  /** Migration ids recorded now as applied by `--baseline`. */
  baselineRecorded: string[];
  /** Migration ids the ledger already held with the same checksum. */
  baselineAlready: string[];
}

/** Result of {@link adoptFleet}. */
export interface AdoptReport {
  dryRun: boolean;
  /** True when something stopped adoption: see `problems` and `misplaced`. Nothing was written. */
  refused: boolean;
  /** True when the catalog already recorded this rule (or a frozen directory): re-running is harmless. */
  alreadyAdopted: boolean;
  /** The map's rule, in words, and its fingerprint (what the catalog records). */
  rule: string;
  fingerprint: string;
  /** Checks that ran. */
  checks: string[];
  /** Every tenant found on a shard other than the rule's, with its rows. */
  misplaced: MisplacedTenant[];
  /** Everything else that stops adoption: schema drift, a missing table, rows without a key, an unreachable shard, ledger conflicts. */
  problems: Finding[];
  /** `--baseline`: the id and the files it covers. */
  baseline?: { id: string; files: string[] };
  shards: AdoptShard[];
  /** True when adopt wrote the rule to the catalog in this run (on a frozen fleet: the rule for new tenants). */
  ruleRecorded: boolean;
  durationMs: number;
}

/** Finding kinds that stop adoption (every other kind is about shardctl's own moves and objects). */
const BLOCKING = new Set([
  'unreachable',
  'check-failed',
  'misplaced-rows',
  'tenant-on-two-shards',
  'rows-without-key',
  'schema-drift',
  'table-missing',
  'directory-unknown-shard',
  'rule-changed',
]);

/**
 * Brings a fleet that shardctl did not build (tables made by an ORM or plain SQL, sharded by hand)
 * under shardctl. Reads only until every check passed: every row must sit on the shard the map's
 * rule names (verify's misplaced-rows SQL; each misplaced tenant is listed with its shard and rows),
 * and the tenant tables' schemas must agree across shards. Then it installs the `shardctl` schema on
 * every shard, records `--baseline` migrations as applied (checksums from the files), and records the
 * rule in the catalog last. Running it again on an adopted fleet writes nothing new and says so.
 *
 * @example
 * const report = await adoptFleet(map, { baseline: '0003' });
 * if (report.refused) console.table(report.misplaced);
 */
export async function adoptFleet(map: ShardMap, options: AdoptOptions = {}): Promise<AdoptReport> {
  const start = performance.now();
  const files =
    options.baseline !== undefined ? baselineFiles(await readMigrationFolder(map.migrations), options.baseline) : [];
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 1,
    applicationName: 'shardctl adopt',
  });
  try {
    const recorded = await pools.withShard(map.catalog, (c) => readRuleState(c));
    // A different recorded rule is refused as every router refuses it (RULE_CHANGED, with its fix).
    assertRuleUnchanged(map, recorded);
    const report = await checkFleet(map, options, files);
    report.alreadyAdopted = recorded !== undefined;
    await listTables(map, pools, report);
    const ledger = await ledgerPlan(map, pools, files, report);
    if (report.refused || options.dryRun) return done(report, start);
    await writeAdoption(map, pools, report, ledger, recorded?.fingerprint === FROZEN);
    return done(report, start);
  } finally {
    await pools.close();
  }
}

function done(report: AdoptReport, start: number): AdoptReport {
  report.durationMs = Math.round(performance.now() - start);
  return report;
}

/** The files up to `id` (inclusive); refuses an id no file has, naming the ones there are. */
function baselineFiles(files: MigrationFile[], id: string): MigrationFile[] {
  if (!/^\d+$/.test(id) || !files.some((f) => BigInt(f.id) === BigInt(id))) {
    throw new ShardctlError(
      `--baseline ${id}: no migration file has that id (files: ${files.map((f) => f.file).join(', ') || 'none'})`,
      {
        code: 'USAGE',
        exitCode: ExitCode.Usage,
        hint: 'pass the id of the last file the fleet already has, for example --baseline 0003',
      },
    );
  }
  return files.filter((f) => BigInt(f.id) <= BigInt(id));
}

/** The read-only checks: verify's misplaced rows and schema agreement, judged for adoption. */
async function checkFleet(map: ShardMap, options: AdoptOptions, files: MigrationFile[]): Promise<AdoptReport> {
  const v = await verifyCluster(map, { only: ['misplaced-rows', 'schema'], timeoutMs: options.timeoutMs ?? 5000 });
  const misplaced: MisplacedTenant[] = [];
  const problems: Finding[] = [];
  for (const f of v.findings) {
    if (f.kind === 'misplaced-rows') {
      const d = f.details as {
        tenant: string;
        shard: string;
        owner: string;
        rows: number;
        tables: Record<string, number>;
      };
      misplaced.push({ tenant: d.tenant, shard: d.shard, owner: d.owner, rows: d.rows, tables: d.tables });
    } else if (BLOCKING.has(f.kind)) problems.push(f);
  }
  misplaced.sort((a, b) => a.shard.localeCompare(b.shard) || a.tenant.localeCompare(b.tenant, 'en', { numeric: true }));
  return {
    dryRun: options.dryRun ?? false,
    refused: misplaced.length > 0 || problems.length > 0,
    alreadyAdopted: false,
    rule: summariseRule(map),
    fingerprint: ruleFingerprint(map),
    checks: v.checks,
    misplaced,
    problems,
    ...(options.baseline !== undefined ? { baseline: { id: options.baseline, files: files.map((f) => f.file) } } : {}),
    shards: map.shards.map((s) => ({
      shard: s.name,
      tables: [],
      catalogSteps: [],
      baselineRecorded: [],
      baselineAlready: [],
    })),
    ruleRecorded: false,
    durationMs: 0,
  };
}

/**
 * The tenant tables of every shard. With none anywhere while other tables exist, the misplaced-rows
 * check proved nothing (the key column is probably misnamed in the map): that stops adoption.
 */
async function listTables(map: ShardMap, pools: ShardPools, report: AdoptReport): Promise<void> {
  const results = await forEachShard(map.shards, (s) =>
    pools.withShard(s.name, async (c) => {
      const tables = (
        await c.query<{ table_name: string; key_column: string }>(TENANT_TABLES_SQL, tenantTablesParams(map))
      ).rows.map((t) => ({ table: t.table_name, keyColumn: t.key_column }));
      const others = await c.query<{ t: string }>(
        `SELECT n.nspname || '.' || c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
            AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'shardctl') AND n.nspname NOT LIKE 'pg_toast%'
            AND NOT (c.relname = ANY($1) OR (n.nspname || '.' || c.relname) = ANY($1))`,
        [map.reference],
      );
      return { tables, others: others.rows.map((r) => r.t) };
    }),
  );
  const others = new Set<string>();
  for (const r of results) {
    if (r.status !== 'ok') continue;
    report.shards.find((s) => s.shard === r.shard)!.tables = r.value.tables;
    for (const t of r.value.others) others.add(t);
  }
  if (report.shards.every((s) => s.tables.length === 0) && others.size > 0) {
    report.problems.push({
      kind: 'check-failed',
      message: `no tenant table found on any shard (no table has the column ${map.shardKey.column}${Object.keys(map.shardKey.columns).length ? ' or its shardKey.columns entry' : ''}), but there are tables (${[...others].sort().slice(0, 5).join(', ')}): the placement check proved nothing; fix shardKey in the map, or list the tables under reference`,
    });
    report.refused = true;
  }
}

/**
 * Which baseline files each shard's ledger lacks; a ledger entry for one of them with another
 * checksum (the file changed since it was applied) is a problem that stops adoption.
 */
async function ledgerPlan(
  map: ShardMap,
  pools: ShardPools,
  files: MigrationFile[],
  report: AdoptReport,
): Promise<Map<string, MigrationFile[]>> {
  const plan = new Map<string, MigrationFile[]>();
  if (files.length === 0) return plan;
  const results = await forEachShard(map.shards, (s) => pools.withShard(s.name, (c) => readLedger(c)));
  for (const r of results) {
    if (r.status !== 'ok') continue; // an unreachable shard is already a problem of the checks
    const entry = report.shards.find((s) => s.shard === r.shard)!;
    const have = new Map((r.value ?? []).map((e) => [e.id, e.checksum]));
    const missing: MigrationFile[] = [];
    for (const f of files) {
      const sum = have.get(f.id);
      if (sum === undefined) missing.push(f);
      else if (sum === f.checksum) entry.baselineAlready.push(f.id);
      else
        report.problems.push({
          kind: 'migration-drift',
          shard: r.shard,
          message: `${r.shard}: the ledger records ${f.file} with checksum ${sum.slice(0, 12)}, but the file's is ${f.checksum.slice(0, 12)}: it changed after it was applied`,
          details: { id: f.id },
        });
    }
    plan.set(r.shard, missing);
  }
  report.refused ||= report.problems.length > 0;
  return plan;
}

/** The writes: the catalog schema and baseline on every shard, then the rule on the catalog, last. */
async function writeAdoption(
  map: ShardMap,
  pools: ShardPools,
  report: AdoptReport,
  ledger: Map<string, MigrationFile[]>,
  frozen: boolean,
): Promise<void> {
  for (const s of map.shards) {
    const entry = report.shards.find((x) => x.shard === s.name)!;
    await pools.withShard(s.name, async (c) => {
      entry.catalogSteps = await ensureCatalogSchema(c);
      const missing = ledger.get(s.name) ?? [];
      if (missing.length === 0) return;
      // Under migrate's lock, so a migrate run on this shard never interleaves with the baseline.
      await withAdvisoryLock(
        c,
        LockKey.migrate,
        () =>
          withTransaction(c, async () => {
            for (const f of missing) {
              const r = await c.query(
                `INSERT INTO shardctl.migrations (id, name, checksum, duration_ms, shardctl_version)
                 VALUES ($1, $2, $3, 0, $4) ON CONFLICT (id) DO NOTHING`,
                [f.id, f.name, f.checksum, SHARDCTL_VERSION],
              );
              (r.rowCount ? entry.baselineRecorded : entry.baselineAlready).push(f.id);
            }
          }),
        { timeoutMs: 10_000, purpose: 'adopt --baseline' },
      );
    });
  }
  if (report.alreadyAdopted && !frozen) return;
  await pools.withShard(map.catalog, async (c) => {
    // Frozen: every tenant is in the directory; keep it frozen and record the map's rule for new tenants.
    await withTransaction(c, () => (frozen ? writeRuleState(c, FROZEN, { map }) : writeRuleState(c, map)));
  });
  report.ruleRecorded = true;
}
