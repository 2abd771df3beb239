import type { ShardMap } from '../config/shard-map.js';
import { ShardPools } from '../db/shard-pools.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { runTransaction, type TxContext } from './two-phase.js';

/** Options of {@link execEverywhere}. */
export interface ExecOptions {
  /**
   * `reference`: the statement writes reference tables, which are the same on every shard, so it must
   * change the same number of rows on each (a difference rolls everything back). `all-shards`: any
   * statement, counts may differ. Either way one two-phase commit.
   */
  mode: 'reference' | 'all-shards';
  /** Run the statement and roll every shard back: the counts say what it would change. Default false. */
  dryRun?: boolean;
  /** Parameters ($1, ...) of the statement. */
  params?: unknown[];
  /** Connection timeout per shard, ms. Default 5000. */
  timeoutMs?: number;
  /** statement_timeout per shard, ms. */
  statementTimeoutMs?: number;
  /** lock_timeout per shard, ms. Default 10000. */
  lockTimeoutMs?: number;
}

/** Result of {@link execEverywhere}. */
export interface ExecReport {
  /** Rows the statement changed (or returned), per shard in map order. */
  shards: { shard: string; rows: number }[];
  /** True when committed on every shard; false in a dry run (rolled back). */
  committed: boolean;
  /** Id of the decision record of the two-phase commit (several shards). */
  transactionId?: string;
  /** Shards the commit could not reach yet (`shardctl recover` finishes them). */
  unfinished: string[];
}

/**
 * Runs one statement on every shard of the map inside one distributed transaction: committed on all
 * or on none. The usual use is a reference table (`plans`, `countries`) kept identical everywhere.
 *
 * @example
 * const r = await execEverywhere(map, "UPDATE plans SET price = 12 WHERE name = 'pro'", { mode: 'reference' });
 * // r.shards: [{ shard: 'shard-0', rows: 1 }, { shard: 'shard-1', rows: 1 }]
 */
export async function execEverywhere(map: ShardMap, sql: string, options: ExecOptions): Promise<ExecReport> {
  if (!sql.trim()) throw new ShardctlError('exec needs a statement', { code: 'USAGE', exitCode: ExitCode.Usage });
  const pool = { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 1, applicationName: 'shardctl exec' };
  const pools = await ShardPools.open(map, pool);
  const decisionPools = await ShardPools.open(map, { ...pool, applicationName: 'shardctl 2pc' });
  try {
    const ctx: TxContext = {
      map,
      pools,
      decisionPools,
      kysely: await import('kysely'),
      locate: () => {
        throw new ShardctlError('exec does not route tenants', { code: 'USAGE', exitCode: ExitCode.Usage });
      },
    };
    const counts = new Map<string, number>();
    const outcome = await runTransaction(
      ctx,
      async (tx) => {
        const query = ctx.kysely.CompiledQuery.raw(sql, options.params ?? []);
        await Promise.all(
          map.shards.map(async (s) => {
            const r = await tx.shard(s.name).executeQuery(query);
            counts.set(s.name, Number(r.numAffectedRows ?? BigInt(r.rows.length)));
          }),
        );
        if (options.mode === 'reference') assertSameCounts(counts);
      },
      {
        rollbackOnly: options.dryRun ?? false,
        lockTimeoutMs: options.lockTimeoutMs ?? 10_000,
        ...(options.statementTimeoutMs ? { statementTimeoutMs: options.statementTimeoutMs } : {}),
      },
    );
    return {
      shards: map.shards.map((s) => ({ shard: s.name, rows: counts.get(s.name) ?? 0 })),
      committed: !outcome.rolledBack,
      ...(outcome.id ? { transactionId: outcome.id } : {}),
      unfinished: outcome.unfinished,
    };
  } finally {
    await Promise.all([pools.close(), decisionPools.close()]);
  }
}

function assertSameCounts(counts: Map<string, number>): void {
  const values = [...counts.values()];
  if (values.every((v) => v === values[0])) return;
  throw new ShardctlError(
    `the statement changed different row counts on the shards (${[...counts].map(([s, n]) => `${s}: ${n}`).join(', ')}): a reference table must be the same everywhere; rolled back on every shard`,
    {
      code: 'REFERENCE_DIVERGED',
      hint: 'see where they differ with `shardctl verify --only reference`, repair with `verify --fix --from SHARD`, or run with --all-shards if the counts may differ',
    },
  );
}
