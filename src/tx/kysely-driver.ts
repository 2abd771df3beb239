import type { Kysely, DatabaseConnection, Driver, QueryResult, CompiledQuery } from 'kysely';
import type { PoolClient } from 'pg';
import { ExitCode, ShardctlError } from '../errors.js';

/** A participant's open transaction: its shard and the dedicated client that ran BEGIN. */
export interface Session {
  shard: string;
  client: PoolClient;
}

const DML = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE']);

/** Kysely's result of one pg result (the same shape as Kysely's own PostgresDriver gives). */
function toResult<R>(r: { command: string; rowCount: number | null; rows?: R[] }): QueryResult<R> {
  return DML.has(r.command) ? { numAffectedRows: BigInt(r.rowCount ?? 0), rows: r.rows ?? [] } : { rows: r.rows ?? [] };
}

function nested(): never {
  throw new ShardctlError('this Kysely is already inside a shardctl transaction: do not call .transaction() on it', {
    code: 'TX_NESTED',
    exitCode: ExitCode.Usage,
    hint: 'write through tx.db(), tx.shard() or tx.reference() directly; router.transaction commits them together',
  });
}

/**
 * A connection that sends each query to every session (one for `tx.db`/`tx.shard`, every shard for
 * `tx.reference`). Over several sessions, a write must change the same number of rows everywhere (a
 * reference table is the same on every shard): a difference is refused, which rolls the whole
 * transaction back, rather than committed as drift. Reads answer from the first shard.
 */
class FanOutConnection implements DatabaseConnection {
  constructor(private readonly sessions: Session[]) {}

  async executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
    const results = await Promise.all(
      this.sessions.map((s) => s.client.query({ text: q.sql, values: [...q.parameters] })),
    );
    const out = results.map((r) => toResult<R>(r as never));
    const counts = out.map((r) => r.numAffectedRows);
    if (counts[0] !== undefined && counts.some((c) => c !== counts[0]))
      throw new ShardctlError(
        `a reference-table write changed different row counts on the shards (${this.sessions.map((s, i) => `${s.shard}: ${counts[i]}`).join(', ')}): refused, nothing is committed`,
        {
          code: 'REFERENCE_DIVERGED',
          hint: 'the reference table differs between shards: shardctl verify --only reference shows where; verify --fix --from SHARD repairs it',
        },
      );
    return out[0]!;
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new ShardctlError('streaming is not available inside router.transaction: use .execute()', {
      code: 'TX_NO_STREAM',
      exitCode: ExitCode.Usage,
    });
  }
}

/** A driver over sessions opened on first use (the lazy BEGIN), which never begins or ends a transaction itself. */
class SessionsDriver implements Driver {
  private connection: Promise<FanOutConnection> | undefined;
  constructor(private readonly open: () => Promise<Session[]>) {}
  async init(): Promise<void> {}
  acquireConnection(): Promise<DatabaseConnection> {
    // A failed open is not kept: the next query tries again (and fails the same way if the shard is gone).
    this.connection ??= this.open().then(
      (s) => new FanOutConnection(s),
      (e: unknown) => {
        this.connection = undefined;
        throw e;
      },
    );
    return this.connection;
  }
  beginTransaction = nested;
  commitTransaction = nested;
  rollbackTransaction = nested;
  async releaseConnection(): Promise<void> {}
  async destroy(): Promise<void> {}
}

/**
 * A Kysely whose queries run in the sessions `open` returns (opened on the first query), inside the
 * transaction the caller owns: the Kysely never commits. Built on Kysely's PostgreSQL adapter and
 * compiler, so queries compile exactly as `router.db()`'s do.
 *
 * @example
 * const db = sessionsKysely<DB>(await import('kysely'), async () => [await participant('shard-0')]);
 */
export function sessionsKysely<DB>(k: typeof import('kysely'), open: () => Promise<Session[]>): Kysely<DB> {
  return new k.Kysely<DB>({
    dialect: {
      createAdapter: () => new k.PostgresAdapter(),
      createDriver: () => new SessionsDriver(open),
      createIntrospector: (db) => new k.PostgresIntrospector(db),
      createQueryCompiler: () => new k.PostgresQueryCompiler(),
    },
  });
}
