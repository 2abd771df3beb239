import type { PoolClient } from 'pg';
import type { Shard, ShardMap } from '../config/shard-map.js';
import { readDirectory } from '../catalog/directory.js';
import { assertRuleUnchanged, readRuleState } from '../catalog/rule-state.js';
import { forEachShard } from '../db/for-each-shard.js';
import { ShardPools } from '../db/shard-pools.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { compileRule } from '../placement/placement.js';
import { parseTenant, tenantText } from '../placement/tenant-key.js';
import { TENANT_TABLES_SQL, tenantTablesParams } from '../catalog/user-tables.js';
import {
  invalidIndexes,
  replicationLeftovers,
  type InvalidIndex,
  type ReplicationLeftover,
} from '../catalog/leftovers.js';
import { readLedger, readMigrationFiles, type LedgerEntry, type MigrationFileSum } from '../catalog/ledger.js';
import { keyCast, quoteIdent, quoteTable } from '../db/sql.js';
import { withTransaction } from '../db/transaction.js';
import { misplacedRowsSql, type KeyedTable } from './misplaced-sql.js';

import { inDoubtFindings } from './prepared-transactions.js';
import { referenceFindings } from './reference-content.js';
import { judgeMoves, readMoveFacts, type MoveFacts } from './move-leftovers.js';
import { diffTable, fingerprint, readSchema, type SchemaDifference, type TableSchema } from './schema-fingerprint.js';

/** What a finding is about. */
export type FindingKind =
  | 'unreachable'
  | 'check-failed'
  | 'misplaced-rows'
  | 'tenant-on-two-shards'
  | 'rows-without-key'
  | 'schema-drift'
  | 'table-missing'
  | 'migration-drift'
  | 'unfinished-move'
  | 'orphan-fence'
  | 'replication-leftover'
  | 'invalid-index'
  | 'directory-unknown-shard'
  | 'rule-changed'
  | 'in-doubt-transaction'
  | 'reference-drift';

/** A repair `verify --fix` may make: one statement on one shard, shown before it runs. */
export interface Fix {
  shard: string;
  description: string;
  sql: string;
}

/** One problem found by {@link verifyCluster}. */
export interface Finding {
  kind: FindingKind;
  shard?: string;
  table?: string;
  tenant?: string;
  message: string;
  details?: unknown;
  /** Present only for problems shardctl can repair safely. */
  fix?: Fix;
}

/** Result of {@link verifyCluster}. */
export interface VerifyReport {
  ok: boolean;
  /** Shards checked, in map order. */
  shards: string[];
  /** Checks that ran (a check is skipped, and said so, when its inputs were unreachable). */
  checks: string[];
  findings: Finding[];
  durationMs: number;
}

/** Options of {@link verifyCluster}. */
export interface VerifyOptions {
  /** Only these shards. Default: all. */
  shards?: string[];
  /** Only this tenant: where its rows are, and its moves and fences. */
  tenant?: unknown;
  /** Connection timeout per shard in ms. Default 5000. */
  timeoutMs?: number;
  /** Run only these checks. Default: all of them. */
  only?: VerifyCheck[];
  /** `transactions`: a shardctl transaction prepared this long ago (ms) is in doubt. Default 5000. */
  inDoubtAfterMs?: number;
}

/** The checks of {@link verifyCluster}, selectable with `only`. */
export type VerifyCheck = 'misplaced-rows' | 'schema' | 'migrations' | 'leftovers' | 'transactions' | 'reference';

/** Every check, in the order they run. */
export const VERIFY_CHECKS: VerifyCheck[] = [
  'misplaced-rows',
  'schema',
  'migrations',
  'leftovers',
  'transactions',
  'reference',
];

interface ShardFacts {
  /** Tenant tables, each with its own tenant column. */
  tables: KeyedTable[];
  misplaced: { table: string; tenant: string | null; rows: number }[];
  schema?: Map<string, TableSchema>;
  ledger: LedgerEntry[] | null;
  replication: ReplicationLeftover[];
  invalid: InvalidIndex[];
  moves: MoveFacts;
}

/**
 * Checks that the cluster is consistent, reading only (every session is opened read-only, so the
 * server itself would refuse a write): misplaced rows (computed in SQL on each shard with the placement
 * rule and the directory), tenants on two shards, schema drift, migration drift, unfinished moves,
 * orphaned fences, shardctl replication objects, INVALID indexes, directory entries naming unknown shards.
 *
 * @example
 * const report = await verifyCluster(map);
 * if (!report.ok) console.table(report.findings);
 */
export async function verifyCluster(map: ShardMap, options: VerifyOptions = {}): Promise<VerifyReport> {
  const start = performance.now();
  const { selected, tenant, want } = verifyScope(map, options);
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 2,
    readOnly: true,
    applicationName: 'shardctl verify',
  });
  try {
    // Connecting costs more than a small shard's check: open every shard's session while the
    // directory is read, instead of after it.
    const warm = Promise.all(
      selected.map((s) => pools.withShard(s.name, async () => undefined).catch(() => undefined)),
    );
    const run: VerifyRun = { map, pools, tenant, want, findings: [], checks: [] };
    const directory = await catalogFindings(run);
    await warm;
    const facts = await collectFacts(run, selected, directory);
    if (directory && want.has('misplaced-rows')) {
      run.checks.push('misplaced-rows');
      run.findings.push(...(await misplacedFindings(map, pools, facts, ownerOf(map, directory))));
    }
    await factFindings(run, facts);
    await transactionFindings(run, selected, options.inDoubtAfterMs ?? 5000);
    return {
      ok: run.findings.length === 0,
      shards: selected.map((s) => s.name),
      checks: run.checks,
      findings: run.findings,
      durationMs: Math.round(performance.now() - start),
    };
  } finally {
    await pools.close();
  }
}

/** The two-phase commit checks: in-doubt prepared transactions, reference tables equal on every shard. */
async function transactionFindings(run: VerifyRun, selected: Shard[], inDoubtAfterMs: number): Promise<void> {
  if (run.tenant !== undefined) return;
  if (run.want.has('transactions')) {
    run.checks.push('transactions');
    run.findings.push(...(await inDoubtFindings(run.map, run.pools, selected, inDoubtAfterMs)));
  }
  if (run.want.has('reference') && run.map.reference.length > 0) {
    run.checks.push('reference');
    run.findings.push(...(await referenceFindings(run.map, run.pools, selected)));
  }
}

/** One verify run: what it checks, and the findings and checks done so far. */
interface VerifyRun {
  map: ShardMap;
  pools: ShardPools;
  /** Only this tenant (canonical text), or every tenant. */
  tenant: string | undefined;
  want: Set<VerifyCheck>;
  findings: Finding[];
  checks: string[];
}

/** The shards and checks asked for, refusing unknown shard and check names. */
function verifyScope(
  map: ShardMap,
  options: VerifyOptions,
): { selected: Shard[]; tenant: string | undefined; want: Set<VerifyCheck> } {
  const names = new Set(map.shards.map((s) => s.name));
  for (const n of options.shards ?? []) {
    if (!names.has(n))
      throw new ShardctlError(`unknown shard "${n}"; the map has ${[...names].join(', ')}`, {
        code: 'UNKNOWN_SHARD',
        exitCode: ExitCode.Usage,
      });
  }
  for (const c of options.only ?? []) {
    if (!VERIFY_CHECKS.includes(c))
      throw new ShardctlError(`unknown check "${c}"; checks: ${VERIFY_CHECKS.join(', ')}`, {
        code: 'USAGE',
        exitCode: ExitCode.Usage,
      });
  }
  return {
    selected: options.shards ? map.shards.filter((s) => options.shards!.includes(s.name)) : map.shards,
    tenant: options.tenant === undefined ? undefined : tenantText(parseTenant(options.tenant, map.shardKey.type)),
    want: new Set<VerifyCheck>(options.only ?? VERIFY_CHECKS),
  };
}

/**
 * Reads the directory and the rule state from the catalog shard, recording a changed rule and entries
 * naming unknown shards. Returns the directory, or undefined when the catalog could not be read: the
 * directory decides where moved tenants belong, so without it misplaced rows cannot be judged.
 */
async function catalogFindings(run: VerifyRun): Promise<Map<string, string> | undefined> {
  const { map, tenant, findings } = run;
  const names = new Set(map.shards.map((s) => s.name));
  let directory: Map<string, string>;
  try {
    const [dir, rule] = await run.pools.withShard(
      map.catalog,
      async (c) => [await readDirectory(c), await readRuleState(c)] as const,
    );
    directory = dir.entries;
    run.checks.push('directory');
    try {
      assertRuleUnchanged(map, rule);
    } catch (e) {
      const err = e as ShardctlError;
      findings.push({
        kind: 'rule-changed',
        shard: map.catalog,
        message: `${err.message}; ${err.hint ?? ''}`,
        details: err.details,
      });
    }
  } catch (e) {
    findings.push({
      kind: 'unreachable',
      shard: map.catalog,
      message: `catalog shard ${map.catalog}: ${(e as Error).message}; misplaced rows not checked`,
    });
    return undefined;
  }
  for (const [t, s] of directory) {
    if (!names.has(s) && (tenant === undefined || tenant === t)) {
      findings.push({
        kind: 'directory-unknown-shard',
        shard: map.catalog,
        tenant: t,
        message: `directory entry for tenant ${t} points to shard "${s}", which is not in the map`,
        details: { tenant: t, shard: s },
      });
    }
  }
  return directory;
}

/** Each reachable shard's facts, read in one snapshot per shard; a shard that failed is a finding. */
async function collectFacts(
  run: VerifyRun,
  selected: Shard[],
  directory: Map<string, string> | undefined,
): Promise<Map<string, ShardFacts>> {
  const { map, want, tenant } = run;
  const results = await forEachShard(selected, (shard) =>
    run.pools.withShard(shard.name, (c) =>
      shardFacts(c, map, shard, want.has('misplaced-rows') ? directory : undefined, tenant, want),
    ),
  );
  const facts = new Map<string, ShardFacts>();
  for (const r of results) {
    if (r.status === 'ok') facts.set(r.shard, r.value);
    else if (r.status === 'failed')
      run.findings.push({
        kind: r.error.code === 'UNREACHABLE' ? 'unreachable' : 'check-failed',
        shard: r.shard,
        message: r.error.message,
      });
  }
  return facts;
}

/** The checks judged from the facts alone: schema, migrations and leftovers (or one tenant's moves). */
async function factFindings(run: VerifyRun, facts: Map<string, ShardFacts>): Promise<void> {
  const { map, want, tenant, findings, checks } = run;
  if (tenant !== undefined) {
    checks.push('tenant-moves');
    findings.push(...leftoverFindings(facts, map).filter((f) => f.tenant === tenant));
    return;
  }
  if (want.has('schema')) {
    checks.push('schema-drift');
    findings.push(...schemaFindings(facts, map));
  }
  if (want.has('migrations')) {
    checks.push('migration-drift');
    findings.push(...migrationFindings(facts, await readMigrationFiles(map.migrations)));
  }
  if (want.has('leftovers')) {
    checks.push('leftovers');
    findings.push(...leftoverFindings(facts, map));
  }
}

function ownerOf(
  map: ShardMap,
  directory: Map<string, string>,
): (tenant: string) => { shard: string; by: 'rule' | 'directory' } {
  const rule = compileRule(map);
  return (t) => {
    const d = directory.get(t);
    return d !== undefined
      ? { shard: d, by: 'directory' }
      : { shard: rule(parseTenant(t, map.shardKey.type)).shard.name, by: 'rule' };
  };
}

async function shardFacts(
  c: PoolClient,
  map: ShardMap,
  shard: Shard,
  directory: Map<string, string> | undefined,
  tenant: string | undefined,
  want: Set<VerifyCheck>,
): Promise<ShardFacts> {
  // One snapshot: every fact of a shard describes the same moment.
  return withTransaction(
    c,
    async () => {
      const tables = (
        await c.query<{ table_name: string; key_column: string }>(TENANT_TABLES_SQL, tenantTablesParams(map))
      ).rows.map((r) => ({ table: r.table_name, keyColumn: r.key_column }));
      const misplaced = directory ? await misplacedOn(c, map, shard, tables, directory, tenant) : [];
      const whole = tenant === undefined;
      const schema = whole && want.has('schema') ? await readSchema(c) : undefined;
      const ledger = whole && want.has('migrations') ? await readLedger(c) : null;
      const replication = whole && want.has('leftovers') ? await replicationLeftovers(c) : [];
      const invalid = whole && want.has('leftovers') ? await invalidIndexes(c) : [];
      const moves = want.has('leftovers') ? await readMoveFacts(c, shard.name) : { moves: [], fences: [] };
      return { tables, misplaced, ...(schema ? { schema } : {}), ledger, replication, invalid, moves };
    },
    { isolation: 'repeatable read', readOnly: true },
  );
}

/**
 * Rows on `shard` that may not belong there: for the whole cluster, what the placement SQL finds; for
 * one tenant, its row count per table (its owner is judged in the client).
 */
async function misplacedOn(
  c: PoolClient,
  map: ShardMap,
  shard: Shard,
  tables: KeyedTable[],
  directory: Map<string, string>,
  tenant: string | undefined,
): Promise<ShardFacts['misplaced']> {
  const misplaced: ShardFacts['misplaced'] = [];
  if (tenant !== undefined) {
    for (const { table, keyColumn } of tables) {
      // One tenant: count its rows here with the key index.
      const r = await c.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM ${quoteTable(table)} WHERE ${quoteIdent(keyColumn)} = $1`,
        [tenant],
      );
      const n = Number(r.rows[0]!.n);
      if (n > 0) misplaced.push({ table, tenant, rows: n });
    }
    return misplaced;
  }
  if (tables.length === 0) return misplaced;
  const here: string[] = [];
  const elsewhere: string[] = [];
  for (const [t, s] of directory) (s === shard.name ? here : elsewhere).push(t);
  const q = misplacedRowsSql(map, tables, shard.index, here, elsewhere);
  const r = await c.query<{ tbl: string; tenant: string | null; rows: string }>(q.sql, q.params);
  for (const row of r.rows) misplaced.push({ table: row.tbl, tenant: row.tenant, rows: Number(row.rows) });
  return misplaced;
}

type Owner = ReturnType<typeof ownerOf>;

/** The tenant column of a table as the shard's facts list it. */
function keyColumnOf(facts: ShardFacts, table: string): string {
  return facts.tables.find((t) => t.table === table)?.keyColumn ?? 'shard-key column';
}
/** tenant -> shard -> table -> rows, of rows that are not on their owner's shard. */
type MisplacedByTenant = Map<string, Map<string, Record<string, number>>>;

/** Groups the misplaced rows by tenant; rows with no shard key are findings of their own. */
function groupMisplaced(
  map: ShardMap,
  facts: Map<string, ShardFacts>,
  owner: Owner,
): { keyless: Finding[]; byTenant: MisplacedByTenant } {
  const keyless: Finding[] = [];
  const byTenant: MisplacedByTenant = new Map();
  for (const [shard, f] of facts) {
    for (const m of f.misplaced) {
      if (m.tenant === null) {
        keyless.push({
          kind: 'rows-without-key',
          shard,
          table: m.table,
          message: `${m.rows} row(s) of ${m.table} on ${shard} have no ${keyColumnOf(f, m.table)}: they belong to no tenant`,
          details: { rows: m.rows },
        });
        continue;
      }
      if (owner(m.tenant).shard === shard) continue; // only in single-tenant mode: counted rows that are where they belong
      let shards = byTenant.get(m.tenant);
      if (!shards) byTenant.set(m.tenant, (shards = new Map()));
      let tables = shards.get(shard);
      if (!tables) shards.set(shard, (tables = {}));
      tables[m.table] = (tables[m.table] ?? 0) + m.rows;
    }
  }
  return { keyless, byTenant };
}

/** Which of the misplaced tenants also have rows on their owning shard (a tenant on two shards at once). */
async function presentOnOwners(
  map: ShardMap,
  pools: ShardPools,
  facts: Map<string, ShardFacts>,
  tenants: string[],
  owner: Owner,
): Promise<Set<string>> {
  const wanted = new Map<string, string[]>();
  for (const t of tenants) {
    const o = owner(t).shard;
    if (!wanted.has(o)) wanted.set(o, []);
    wanted.get(o)!.push(t);
  }
  const present = new Set<string>();
  const arr = `${keyCast(map.shardKey.type)}[]`;
  await Promise.all(
    [...wanted].map(async ([shard, ids]) => {
      if (!map.shards.some((s) => s.name === shard)) return;
      const tables = facts.get(shard)?.tables;
      if (!tables) return;
      await pools
        .withShard(shard, async (c) => {
          for (const { table, keyColumn } of tables) {
            const key = quoteIdent(keyColumn);
            const r = await c.query<{ t: string }>(
              `SELECT DISTINCT ${key}::text AS t FROM ${quoteTable(table)} WHERE ${key} = ANY($1::${arr})`,
              [ids],
            );
            for (const row of r.rows) present.add(row.t);
          }
        })
        .catch(() => undefined);
    }),
  );
  return present;
}

async function misplacedFindings(
  map: ShardMap,
  pools: ShardPools,
  facts: Map<string, ShardFacts>,
  owner: Owner,
): Promise<Finding[]> {
  const { keyless, byTenant } = groupMisplaced(map, facts, owner);
  const out = keyless;
  const presentOnOwner = await presentOnOwners(map, pools, facts, [...byTenant.keys()], owner);
  for (const [tenant, shards] of byTenant) {
    const o = owner(tenant);
    for (const [shard, tables] of shards) {
      const rows = Object.values(tables).reduce((a, b) => a + b, 0);
      const list = Object.entries(tables)
        .map(([t, n]) => `${t} ${n}`)
        .join(', ');
      out.push({
        kind: 'misplaced-rows',
        shard,
        tenant,
        message: `tenant ${tenant}: ${rows} row(s) on ${shard} (${list}) but it belongs on ${o.shard} (by the ${o.by})`,
        details: { tenant, shard, owner: o.shard, by: o.by, rows, tables },
      });
    }
    if (presentOnOwner.has(tenant)) {
      out.push({
        kind: 'tenant-on-two-shards',
        tenant,
        message: `tenant ${tenant} has rows on ${[o.shard, ...shards.keys()].join(' and ')}`,
        details: { tenant, shards: [o.shard, ...shards.keys()] },
      });
    }
  }
  const byRule = out.some((f) => f.kind === 'misplaced-rows' && (f.details as { by: string }).by === 'rule');
  if (byRule && map.placement.strategy === 'modulo') {
    const first = out.find((f) => f.kind === 'misplaced-rows')!;
    first.message +=
      '; if the shard list changed, restore the old map, run `shardctl rebalance --freeze`, then edit it again';
  }
  return out;
}

function schemaFindings(facts: Map<string, ShardFacts>, map: ShardMap): Finding[] {
  const out: Finding[] = [];
  const shards = [...facts.keys()];
  const allTables = new Set<string>();
  for (const f of facts.values()) for (const t of f.schema?.keys() ?? []) allTables.add(t);
  for (const table of [...allTables].sort()) {
    const prints = new Map<string, string[]>();
    const missing: string[] = [];
    for (const s of shards) {
      const t = facts.get(s)!.schema?.get(table);
      if (!t) {
        missing.push(s);
        continue;
      }
      const fp = fingerprint(t);
      if (!prints.has(fp)) prints.set(fp, []);
      prints.get(fp)!.push(s);
    }
    if (missing.length > 0) {
      out.push({
        kind: 'table-missing',
        table,
        message: `table ${table} is missing on ${missing.join(', ')} (present on ${shards.filter((s) => !missing.includes(s)).join(', ')})`,
        details: { missing },
      });
    }
    if (prints.size <= 1) continue;
    // The reference is the fingerprint most shards share; ties go to the one the catalog shard has.
    const ranked = [...prints.entries()].sort(
      (a, b) => b[1].length - a[1].length || Number(b[1].includes(map.catalog)) - Number(a[1].includes(map.catalog)),
    );
    const [, refShards] = ranked[0]!;
    const reference = facts.get(refShards[0]!)!.schema!.get(table)!;
    for (const [, group] of ranked.slice(1)) {
      for (const s of group) {
        const diffs: SchemaDifference[] = diffTable(reference, facts.get(s)!.schema!.get(table)!);
        out.push({
          kind: 'schema-drift',
          shard: s,
          table,
          message: `table ${table} on ${s} differs from ${refShards.join(', ')}: ${diffs.map(describeDiff).join('; ')}`,
          details: { reference: refShards, differences: diffs },
        });
      }
    }
  }
  return out;
}

function describeDiff(d: SchemaDifference): string {
  const what = `${d.part.replace(/s$/, '')} ${d.name}`;
  if (d.expected === undefined) return `extra ${what} (${d.actual})`;
  if (d.actual === undefined) return `missing ${what} (${d.expected})`;
  return `${what} is "${d.actual}", expected "${d.expected}"`;
}

function migrationFindings(facts: Map<string, ShardFacts>, files: MigrationFileSum[] | null): Finding[] {
  const out: Finding[] = [];
  const byId = new Map((files ?? []).map((f) => [f.id, f]));
  const ledgers = [...facts.entries()].filter(([, f]) => f.ledger !== null) as [
    string,
    ShardFacts & { ledger: LedgerEntry[] },
  ][];
  for (const [shard, f] of ledgers) {
    for (const e of f.ledger) {
      const file = byId.get(e.id);
      if (files && !file) {
        out.push({
          kind: 'migration-drift',
          shard,
          message: `${shard}: migration ${e.id}_${e.name} is in the ledger but its file is gone`,
          details: { id: e.id, name: e.name },
        });
      } else if (file && file.checksum !== e.checksum) {
        out.push({
          kind: 'migration-drift',
          shard,
          message: `${shard}: migration ${file.file} changed after it was applied (checksum ${e.checksum.slice(0, 12)} applied, ${file.checksum.slice(0, 12)} now)`,
          details: { id: e.id },
        });
      }
    }
  }
  if (ledgers.length > 1) {
    const sig = (l: LedgerEntry[]) =>
      l
        .map((e) => `${e.id}:${e.checksum}`)
        .sort()
        .join(',');
    const groups = new Map<string, string[]>();
    for (const [shard, f] of ledgers) {
      const k = sig(f.ledger);
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k)!.push(shard);
    }
    if (groups.size > 1) {
      const versions = ledgers.map(
        ([shard, f]) =>
          `${shard} at ${
            f.ledger.length
              ? f.ledger
                  .map((e) => e.id)
                  .sort()
                  .at(-1)
              : 'none'
          } (${f.ledger.length} applied)`,
      );
      out.push({
        kind: 'migration-drift',
        message: `migration ledgers differ between shards: ${versions.join(', ')}`,
        details: Object.fromEntries(ledgers.map(([s, f]) => [s, f.ledger.map((e) => e.id)])),
      });
    }
  }
  return out;
}

function leftoverFindings(facts: Map<string, ShardFacts>, map: ShardMap): Finding[] {
  const out: Finding[] = [];
  const activeMoveObjects = new Set<string>();
  // The journal lives on the catalog; fences on the shards they protect.
  const journal = facts.get(map.catalog)?.moves.moves ?? [];
  const fences = [...facts.values()].flatMap((f) => f.moves.fences);
  for (const m of judgeMoves(journal, fences)) {
    if (m.kind === 'unfinished-move') for (const o of m.objects ?? []) activeMoveObjects.add(o);
    const shard = m.kind === 'unfinished-move' ? map.catalog : (m.details as { shard: string }).shard;
    out.push({
      kind: m.kind,
      shard,
      ...(m.tenant !== undefined ? { tenant: m.tenant } : {}),
      message: m.message,
      details: m.details,
    });
  }
  for (const [shard, f] of facts) {
    for (const r of f.replication) {
      const owned = activeMoveObjects.has(r.name);
      const sql =
        r.kind === 'replication-slot'
          ? `SELECT pg_drop_replication_slot('${r.name.replace(/'/g, "''")}')`
          : r.kind === 'publication'
            ? `DROP PUBLICATION IF EXISTS ${quoteIdent(r.name)}`
            : // Detached from its slot first: dropping it then never needs the publisher.
              `ALTER SUBSCRIPTION ${quoteIdent(r.name)} DISABLE; ALTER SUBSCRIPTION ${quoteIdent(r.name)} SET (slot_name = NONE); DROP SUBSCRIPTION ${quoteIdent(r.name)}`;
      out.push({
        kind: 'replication-leftover',
        shard,
        message: `${shard}: ${r.kind} ${r.name}${r.retainedWalBytes !== undefined ? ` retains ${r.retainedWalBytes} bytes of WAL` : ''}${r.active ? ' (in use)' : ''}${owned ? ' (belongs to an unfinished move: resume or abort it)' : ''}`,
        details: r,
        ...(!owned && !r.active ? { fix: { shard, description: `drop ${r.kind} ${r.name}`, sql } } : {}),
      });
    }
    for (const i of f.invalid) {
      out.push({
        kind: 'invalid-index',
        shard,
        table: i.table,
        message: `${shard}: index ${i.index} on ${i.table} is INVALID${i.buildInProgress ? ' (a build on that table is running now)' : ''}; drop it with DROP INDEX CONCURRENTLY ${i.index} and build it again`,
        details: i,
        ...(!i.buildInProgress
          ? {
              fix: {
                shard,
                description: `drop INVALID index ${i.index}`,
                sql: `DROP INDEX CONCURRENTLY IF EXISTS ${quoteTable(i.index)}`,
              },
            }
          : {}),
      });
    }
  }
  return out;
}

/** Result of applying one fix. */
export interface FixResult {
  fix: Fix;
  status: 'ok' | 'failed';
  error?: string;
}

/**
 * Applies fixes that {@link verifyCluster} proposed, one at a time, each on its shard, and reports
 * each outcome. Call only after the operator confirmed the list.
 *
 * @example
 * const results = await applyFixes(map, report.findings.flatMap((f) => (f.fix ? [f.fix] : [])));
 */
export async function applyFixes(
  map: ShardMap,
  fixes: Fix[],
  options: { timeoutMs?: number } = {},
): Promise<FixResult[]> {
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 1,
    applicationName: 'shardctl verify --fix',
  });
  const out: FixResult[] = [];
  try {
    for (const fix of fixes) {
      try {
        await pools.withShard(fix.shard, (c) => c.query(fix.sql));
        out.push({ fix, status: 'ok' });
      } catch (e) {
        out.push({ fix, status: 'failed', error: (e as Error).message });
      }
    }
  } finally {
    await pools.close();
  }
  return out;
}
