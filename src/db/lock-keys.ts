/**
 * Every advisory lock shardctl takes, in one place, so that no two purposes can share a key. Locks use
 * the two-key form: the first key is {@link ADVISORY_NAMESPACE} (so they never collide with an
 * application's own locks), the second one of these.
 *
 * @example
 * await withAdvisoryLock(client, LockKey.migrate, run, { purpose: 'migrate' });
 * await withAdvisoryLock(client, moveLockKey(42), run, { purpose: 'move 42' });
 */

/** Namespace of shardctl's advisory locks (the first key of the two-key form): "SHCT". */
export const ADVISORY_NAMESPACE = 0x5348_4354 | 0;

/** Second keys of shardctl's advisory locks. */
export const LockKey = {
  /** Catalog schema upgrades (session lock held across the upgrade transaction). */
  catalogSchema: 0,
  /** A migrate run on a shard. */
  migrate: 10,
  /** Writes of the whole directory (freeze, prune), as a transaction lock on the catalog shard. */
  directory: 50,
  /** Base of the per-move locks: move N holds `moveBase + N` on the catalog shard. */
  moveBase: 100_000,
} as const;

/** The advisory lock key of move `id` (held on the catalog shard while the move runs). */
export function moveLockKey(id: number): number {
  return LockKey.moveBase + id;
}
