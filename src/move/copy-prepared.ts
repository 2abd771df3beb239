import type { PoolClient } from 'pg';

/**
 * Global ids of a parallel copy's prepared target transactions: `shardmove_<move id>_<attempt>_<stream>`.
 * Not `shardctl_`: those belong to distributed transactions (src/tx), whose recovery decides them from
 * shardctl.tx_decisions; a copy's are decided by its move's journal (`stats.copyCommit` names the one
 * attempt whose transactions commit), and only the move's own steps resolve them.
 *
 * @example
 * copyGid(7, 'k3x9', 2) // 'shardmove_7_k3x9_2'
 * parseCopyGid('shardmove_7_k3x9_2') // { moveId: 7, attempt: 'k3x9', stream: 2 }
 */
export function copyGid(moveId: number, attempt: string, stream: number): string {
  return `shardmove_${moveId}_${attempt}_${stream}`;
}

/** The move, attempt and stream of a copy's global id, or undefined for any other. */
export function parseCopyGid(gid: string): { moveId: number; attempt: string; stream: number } | undefined {
  const m = /^shardmove_(\d+)_([a-z0-9]+)_(\d+)$/.exec(gid);
  return m ? { moveId: Number(m[1]), attempt: m[2]!, stream: Number(m[3]) } : undefined;
}

/** A fresh attempt name (lower-case letters and digits): one per parallel copy. */
export function newCopyAttempt(): string {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
}

/**
 * Finishes the prepared transactions an interrupted parallel copy of move `moveId` left on the target
 * (connected to the target's database): those of the attempt the journal decided to commit are
 * committed (a crash fell between the decision and the last COMMIT PREPARED), every other is rolled back
 * (no decision was recorded: none of that attempt's streams committed). Idempotent.
 *
 * @returns the global ids committed and rolled back
 * @example
 * await resolveCopyTransactions(target, 7, move.stats.copyCommit as string | undefined) // { committed: [], rolledBack: ['shardmove_7_k3x9_0'] }
 */
export async function resolveCopyTransactions(
  target: PoolClient,
  moveId: number,
  committedAttempt: string | undefined,
): Promise<{ committed: string[]; rolledBack: string[] }> {
  const r = await target.query<{ gid: string }>(
    `SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE $1 ORDER BY gid`,
    [`shardmove\\_${moveId}\\_%`],
  );
  const out = { committed: [] as string[], rolledBack: [] as string[] };
  for (const { gid } of r.rows) {
    const parsed = parseCopyGid(gid);
    if (!parsed || parsed.moveId !== moveId) continue;
    const commit = parsed.attempt === committedAttempt;
    // A gid is a literal here (COMMIT PREPARED takes no parameter); its characters were checked above.
    await target.query(`${commit ? 'COMMIT' : 'ROLLBACK'} PREPARED '${gid}'`);
    (commit ? out.committed : out.rolledBack).push(gid);
  }
  return out;
}
