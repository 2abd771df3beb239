import type { PoolClient } from 'pg';
import { crashPoint } from '../crash-points.js';
import { keyCast, quoteIdent, quoteTable } from '../db/sql.js';
import { withTransaction } from '../db/transaction.js';
import { fromDriverError, ShardctlError } from '../errors.js';
import type { ChangedKeys, TenantKey } from './change-tracking.js';
import { STABLE_TEXT_SETTINGS } from './copy-tenant.js';
import { FENCE_BYPASS, tenantList, tenantSetting } from './fence.js';
import type { TenantTable } from './tenant-tables.js';

/** Keys re-copied so far, each with the change-log id it had when copied: a later change gives a new id. */
export type AppliedKeys = Map<string, number>;

/** The key of a logged row in {@link AppliedKeys}. */
export function appliedId(table: string, pk: string): string {
  return `${table}\u0000${pk}`;
}

/** Most keys one delta pass re-copies (the rest waits for the next pass): bounds a pass's memory and time. */
const PASS_LIMIT = 20_000;

/** The tenant's current rows (as row text; null where the source has none) of the given logged keys. */
interface TableDelta {
  table: TenantTable;
  present: string[];
  absent: string[];
  /** appliedId -> log id, recorded once the pass committed. */
  ids: [string, number][];
}

/** Keys of the log whose latest id was not copied yet, per table, at most {@link PASS_LIMIT} in all. */
export function pendingKeys(
  tables: TenantTable[],
  log: ChangedKeys['keys'],
  applied: AppliedKeys,
): Map<string, [string, number][]> {
  const out = new Map<string, [string, number][]>();
  let n = 0;
  for (const t of tables) {
    const ks: [string, number][] = [];
    for (const [k, id] of log.get(t.table) ?? []) {
      if (n >= PASS_LIMIT) break;
      if (applied.get(appliedId(t.table, k)) === id) continue;
      ks.push([k, id]);
      n++;
    }
    if (ks.length > 0) out.set(t.table, ks);
  }
  return out;
}

const keysJoin = (t: TenantTable, a: string, b: string) =>
  t.primaryKey.map((c) => `${a}.${quoteIdent(c)} = ${b}.${quoteIdent(c)}`).join(' AND ');

/** Reads the rows of the pending keys from the source, every table in one snapshot (parents and children agree). */
async function readDelta(
  src: PoolClient,
  tables: TenantTable[],
  pending: Map<string, [string, number][]>,
  who: TenantKey,
): Promise<TableDelta[]> {
  return withTransaction(
    src,
    async () => {
      const out: TableDelta[] = [];
      for (const t of tables) {
        const ks = pending.get(t.table);
        if (!ks) continue;
        const r = await src.query<{ k: string; r: string | null }>(
          `SELECT k.pk AS k, CASE WHEN x.${quoteIdent(t.primaryKey[0]!)} IS NULL THEN NULL ELSE x::text END AS r
             FROM unnest($1::text[]) AS k(pk)
             CROSS JOIN LATERAL jsonb_populate_record(NULL::${quoteTable(t.table)}, k.pk::jsonb) AS p
             LEFT JOIN ${quoteTable(t.table)} x ON ${keysJoin(t, 'x', 'p')} AND x.${quoteIdent(t.keyColumn)} = ANY ($2::text[]::${keyCast(who.type)}[])`,
          [ks.map(([k]) => k), tenantList(who.tenant)],
        );
        const present = r.rows.filter((x) => x.r !== null).map((x) => x.r!);
        const absent = r.rows.filter((x) => x.r === null).map((x) => x.k);
        out.push({ table: t, present, absent, ids: ks.map(([k, id]) => [appliedId(t.table, k), id]) });
      }
      return out;
    },
    { isolation: 'repeatable read', readOnly: true, prelude: STABLE_TEXT_SETTINGS },
  );
}

/** Inserts or updates the tenant's rows on the target; a key held there by another tenant's row is refused by name. */
async function upsertRows(dst: PoolClient, d: TableDelta, who: TenantKey, target: string): Promise<void> {
  const t = d.table;
  if (d.present.length === 0) return;
  const cols = t.columns.map(quoteIdent);
  const nonKey = t.columns.filter((c) => !t.primaryKey.includes(c));
  const set = (nonKey.length > 0 ? nonKey : [t.primaryKey[0]!])
    .map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`)
    .join(', ');
  // Identity columns take the source's values (as COPY does); the update never touches another tenant's row.
  const r = await dst.query(
    `INSERT INTO ${quoteTable(t.table)} AS x (${cols.join(', ')}) OVERRIDING SYSTEM VALUE
     SELECT ${cols.map((c) => `(v).${c}`).join(', ')} FROM (SELECT r::${quoteTable(t.table)} AS v FROM unnest($1::text[]) AS r) s
     ON CONFLICT (${t.primaryKey.map(quoteIdent).join(', ')}) DO UPDATE SET ${set}
     WHERE x.${quoteIdent(t.keyColumn)} = ANY ($2::text[]::${keyCast(who.type)}[])
     RETURNING 1`,
    [d.present, tenantList(who.tenant)],
  );
  if ((r.rowCount ?? 0) < d.present.length)
    throw new ShardctlError(
      `${target}: ${t.table} holds rows of another tenant with primary keys of the moving tenant's rows (${tenantList(who.tenant).join(', ')}); nothing of this pass was written`,
      {
        code: 'TARGET_HAS_ROWS',
        shard: target,
        hint: 'primary keys must be unique across the tenants of a shard: find the rows with `shardctl verify --tenant ID`; abort the move',
      },
    );
}

/** Deletes on the target the tenant's rows whose key the source no longer has (for the tenant). */
async function deleteRows(dst: PoolClient, d: TableDelta, who: TenantKey): Promise<void> {
  const t = d.table;
  if (d.absent.length === 0) return;
  await dst.query(
    `DELETE FROM ${quoteTable(t.table)} x
      USING (SELECT p.* FROM unnest($1::text[]) AS k(pk) CROSS JOIN LATERAL jsonb_populate_record(NULL::${quoteTable(t.table)}, k.pk::jsonb) AS p) d
      WHERE ${keysJoin(t, 'x', 'd')} AND x.${quoteIdent(t.keyColumn)} = ANY ($2::text[]::${keyCast(who.type)}[])`,
    [d.absent, tenantList(who.tenant)],
  );
}

/** Opens a pass's target transaction (in BEGIN's round trip): the savepoint lets a pass be redone in the other order. */
const DELTA_PRELUDE = `${STABLE_TEXT_SETTINGS}; SET CONSTRAINTS ALL DEFERRED; SAVEPOINT shardctl_delta`;

/**
 * Writes a pass on the target in one transaction: upserts parents first, then deletes children first
 * (a child moved to a new parent before its old parent goes). When that order meets a unique or foreign
 * key (a unique value handed from a deleted row to a new one), the pass is redone deletes first.
 */
async function writeDelta(dst: PoolClient, ds: TableDelta[], who: TenantKey, target: string): Promise<void> {
  const upserts = async () => {
    for (const d of ds) await upsertRows(dst, d, who, target);
  };
  const deletes = async () => {
    for (const d of [...ds].reverse()) await deleteRows(dst, d, who);
  };
  // The transaction opened with DELTA_PRELUDE: text settings, deferred constraints, the savepoint.
  try {
    await upserts();
    await deletes();
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code !== '23505' && code !== '23503') throw e;
    await dst.query('ROLLBACK TO SAVEPOINT shardctl_delta');
    await deletes();
    await upserts();
  }
}

/**
 * One delta pass of the trigger capture: re-copies the tenant's rows whose keys the change log names
 * since they were last copied (upsert on the target; delete where the source no longer has the row),
 * reading the source in one snapshot and writing the target in one transaction. Returns the keys copied
 * (0: the target holds every logged change). The log ids are recorded in `applied` only after the commit.
 *
 * @example
 * const n = await copyDelta(src, dst, tables, { tenant: '7', type: 'bigint' }, log.keys, applied, { source: 's0', target: 's1' });
 */
export async function copyDelta(
  src: PoolClient,
  dst: PoolClient,
  tables: TenantTable[],
  who: TenantKey,
  log: ChangedKeys['keys'],
  applied: AppliedKeys,
  shards: { source: string; target: string },
): Promise<number> {
  const pending = pendingKeys(tables, log, applied);
  if (pending.size === 0) return 0;
  const deltas = await readDelta(src, tables, pending, who).catch((e: unknown) =>
    Promise.reject(fromDriverError(e, { shard: shards.source })),
  );
  await withTransaction(
    dst,
    async () => {
      await writeDelta(dst, deltas, who, shards.target);
      crashPoint('trigger:mid-delta');
    },
    { settings: { ...FENCE_BYPASS, ...tenantSetting(who.tenant) }, prelude: DELTA_PRELUDE },
  ).catch((e: unknown) => Promise.reject(fromDriverError(e, { shard: shards.target })));
  let n = 0;
  for (const d of deltas)
    for (const [k, id] of d.ids) {
      applied.set(k, id);
      n++;
    }
  return n;
}
