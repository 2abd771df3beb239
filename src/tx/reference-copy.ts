import type { Kysely } from 'kysely';
import type { ShardMap } from '../config/shard-map.js';
import { ShardPools } from '../db/shard-pools.js';
import { quoteIdent, quoteTable } from '../db/sql.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { runTransaction, type TxContext } from './two-phase.js';

/** Result of {@link copyReferenceTable}. */
export interface ReferenceCopyReport {
  table: string;
  from: string;
  /** Rows of the source table. */
  rows: number;
  /** Rows deleted, inserted or updated, per other shard. */
  shards: { shard: string; changed: number }[];
  /** Id of the decision record of the two-phase commit. */
  transactionId?: string;
  unfinished: string[];
}

type AnyDb = Kysely<Record<string, never>>;

async function rawQuery<R>(db: AnyDb, ctx: TxContext, sql: string, params: unknown[] = []) {
  return db.executeQuery<R>(ctx.kysely.CompiledQuery.raw(sql, params));
}

/** Columns a copy writes (generated ones are computed) and the primary key, read on the source. */
async function tableShape(db: AnyDb, ctx: TxContext, table: string): Promise<{ cols: string[]; pk: string[] }> {
  const r = await rawQuery<{ cols: string[] | null; pk: string[] | null }>(
    db,
    ctx,
    `SELECT (SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
              WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '') AS cols,
            (SELECT array_agg(a.attname::text ORDER BY k.i) FROM pg_index x
               CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(n, i)
               JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n
              WHERE x.indrelid = $1::regclass AND x.indisprimary) AS pk`,
    [quoteTable(table)],
  );
  return { cols: r.rows[0]?.cols ?? [], pk: r.rows[0]?.pk ?? [] };
}

/**
 * The statements that make a shard's table equal to the source rows (`$1`, JSON). With a primary key:
 * delete the rows the source lacks, upsert the others (rows that other tables reference and that the
 * source also has stay in place). Without one: delete everything, insert everything.
 */
function syncStatements(table: string, cols: string[], pk: string[]): string[] {
  const t = quoteTable(table);
  const list = cols.map(quoteIdent).join(', ');
  const src = `json_populate_recordset(NULL::${t}, $1::json)`;
  if (pk.length === 0) return [`DELETE FROM ${t}`, `INSERT INTO ${t} (${list}) SELECT ${list} FROM ${src}`];
  const key = pk.map(quoteIdent).join(', ');
  const rest = cols.filter((c) => !pk.includes(c)).map(quoteIdent);
  const onConflict =
    rest.length === 0
      ? 'DO NOTHING'
      : `DO UPDATE SET ${rest.map((c) => `${c} = excluded.${c}`).join(', ')}
           WHERE (${rest.map((c) => `${t}.${c}`).join(', ')}) IS DISTINCT FROM (${rest.map((c) => `excluded.${c}`).join(', ')})`;
  return [
    `DELETE FROM ${t} WHERE (${key}) NOT IN (SELECT ${key} FROM ${src})`,
    `INSERT INTO ${t} (${list}) SELECT ${list} FROM ${src} ON CONFLICT (${key}) ${onConflict}`,
  ];
}

/**
 * Makes a reference table on every shard equal to its copy on `from`, in one two-phase commit: all
 * shards change or none. The source table is locked against writes (SHARE) until the commit.
 *
 * @example
 * await copyReferenceTable(map, 'plans', 'shard-0') // { rows: 3, shards: [{ shard: 'shard-1', changed: 1 }, ...] }
 */
export async function copyReferenceTable(
  map: ShardMap,
  table: string,
  from: string,
  options: { timeoutMs?: number } = {},
): Promise<ReferenceCopyReport> {
  if (!map.shards.some((s) => s.name === from))
    throw new ShardctlError(`unknown shard "${from}"; the map has ${map.shards.map((s) => s.name).join(', ')}`, {
      code: 'UNKNOWN_SHARD',
      exitCode: ExitCode.Usage,
    });
  const pool = {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 1,
    applicationName: 'shardctl verify --fix',
  };
  const [pools, decisionPools] = await Promise.all([
    ShardPools.open(map, pool),
    ShardPools.open(map, { ...pool, applicationName: 'shardctl 2pc' }),
  ]);
  try {
    const ctx: TxContext = { map, pools, decisionPools, kysely: await import('kysely'), locate: () => from };
    const outcome = await runTransaction(
      ctx,
      async (tx) => {
        const src = tx.shard<Record<string, never>>(from);
        await rawQuery(src, ctx, `LOCK TABLE ${quoteTable(table)} IN SHARE MODE`);
        const { cols, pk } = await tableShape(src, ctx, table);
        const data = await rawQuery<{ rows: string; n: string }>(
          src,
          ctx,
          `SELECT coalesce(json_agg(x), '[]')::text AS rows, count(*)::text AS n FROM ${quoteTable(table)} x`,
        );
        const json = data.rows[0]!.rows;
        const shards = await Promise.all(
          map.shards
            .filter((s) => s.name !== from)
            .map(async (s) => {
              let changed = 0;
              for (const stmt of syncStatements(table, cols, pk))
                changed += Number((await rawQuery(tx.shard(s.name), ctx, stmt, [json])).numAffectedRows ?? 0);
              return { shard: s.name, changed };
            }),
        );
        return { rows: Number(data.rows[0]!.n), shards };
      },
      { lockTimeoutMs: 10_000 },
    );
    return {
      table,
      from,
      ...outcome.value,
      ...(outcome.id ? { transactionId: outcome.id } : {}),
      unfinished: outcome.unfinished,
    };
  } finally {
    await Promise.all([pools.close(), decisionPools.close()]);
  }
}
