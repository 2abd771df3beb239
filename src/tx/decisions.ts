import type { PoolClient } from 'pg';
import { quoteLiteral } from '../db/sql.js';
import { withTransaction } from '../db/transaction.js';

/** A decision record of the catalog shard. */
export interface Decision {
  id: string;
  state: 'commit' | 'abort';
  participants: string[];
  coordinator: string | null;
  createdAt: string;
}

/** What recovery learns of a transaction id: its decision, or that its coordinator still holds it open. */
export type DecisionState = 'commit' | 'abort' | 'pending';

/**
 * Opens the decision transaction of a distributed transaction on the catalog shard and inserts its
 * record (state `commit`, not yet visible to anyone): one round trip. The transaction stays open while
 * the participants PREPARE; its COMMIT is the commit decision, and its end without COMMIT (a crash, a
 * lost connection) leaves recovery free to decide abort. A coordinator that hangs without a crash
 * loses its decision transaction after 60 s idle (idle_in_transaction_session_timeout), so that
 * recovery never waits for it for ever. `prune` deletes the records of transactions this process
 * finished earlier, in the same round trip (if this transaction aborts, they stay for recovery). Returns the id that names the global ids.
 *
 * @example
 * const id = await openDecision(client, ['shard-0', 'shard-1'], 'host:4242');
 */
export async function openDecision(
  client: PoolClient,
  participants: string[],
  coordinator: string,
  prune: string[] = [],
): Promise<string> {
  const array = `ARRAY[${participants.map(quoteLiteral).join(', ')}]::text[]`;
  // Records of transactions finished earlier go in the same round trip (ids are digits, checked).
  const ids = prune.filter((id) => /^\d+$/.test(id));
  const del = ids.length > 0 ? `DELETE FROM shardctl.tx_decisions WHERE id IN (${ids.join(', ')}); ` : '';
  // Simple protocol, several statements, one round trip (no parameters: every value is quoted above).
  const results = (await client.query(
    `BEGIN; SET LOCAL idle_in_transaction_session_timeout = '60s'; ${del}INSERT INTO shardctl.tx_decisions (state, participants, coordinator)
       VALUES ('commit', ${array}, ${quoteLiteral(coordinator)}) RETURNING id::text AS id`,
  )) as unknown as { rows: { id: string }[] }[];
  return results[results.length - 1]!.rows[0]!.id;
}

/** SQLSTATE of a lock wait that ran out of lock_timeout. */
const LOCK_NOT_AVAILABLE = '55P03';

/**
 * The decision of transaction `id`, deciding abort when nobody decided: inserts an `abort` record
 * unless one exists. While the coordinator's decision transaction is open, the insert waits on its
 * uncommitted row (same primary key); if that transaction commits, the insert does nothing and the
 * record says `commit`; if it ended without commit, the `abort` record wins for ever (the coordinator
 * cannot commit a transaction that is gone). Still waiting after `waitMs`: `pending`.
 *
 * @example
 * await resolveDecision(catalogClient, '42', 2000) // 'abort' when the coordinator crashed before deciding
 */
export async function resolveDecision(client: PoolClient, id: string, waitMs: number): Promise<DecisionState> {
  try {
    return await withTransaction(
      client,
      async () => {
        await client.query(
          `INSERT INTO shardctl.tx_decisions (id, state, coordinator) VALUES ($1::bigint, 'abort', 'shardctl recover')
           ON CONFLICT (id) DO NOTHING`,
          [id],
        );
        const r = await client.query<{ state: 'commit' | 'abort' }>(
          'SELECT state FROM shardctl.tx_decisions WHERE id = $1::bigint',
          [id],
        );
        return r.rows[0]!.state;
      },
      { lockTimeoutMs: Math.max(1, waitMs) },
    );
  } catch (e) {
    if ((e as { code?: string }).code === LOCK_NOT_AVAILABLE) return 'pending';
    throw e;
  }
}

/** Whether the catalog has decision records at all (a fleet that never ran a distributed transaction may not). */
export async function hasDecisionTable(client: PoolClient): Promise<boolean> {
  const r = await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.tx_decisions')::text AS t");
  return Boolean(r.rows[0]?.t);
}

/** Every decision record of the catalog shard, by id (none where the table does not exist). */
export async function readDecisions(client: PoolClient): Promise<Map<string, Decision>> {
  const out = new Map<string, Decision>();
  if (!(await hasDecisionTable(client))) return out;
  const r = await client.query<{
    id: string;
    state: 'commit' | 'abort';
    participants: string[];
    coordinator: string | null;
    created_at: Date;
  }>('SELECT id::text AS id, state, participants, coordinator, created_at FROM shardctl.tx_decisions ORDER BY id');
  for (const x of r.rows)
    out.set(x.id, {
      id: x.id,
      state: x.state,
      participants: x.participants,
      coordinator: x.coordinator,
      createdAt: new Date(x.created_at).toISOString(),
    });
  return out;
}

/** Deletes decision records (their participants have all finished). Returns how many went. */
export async function pruneDecisions(client: PoolClient, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const r = await client.query('DELETE FROM shardctl.tx_decisions WHERE id = ANY ($1::bigint[])', [ids]);
  return r.rowCount ?? 0;
}
