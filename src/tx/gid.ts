/**
 * Global ids of shardctl's prepared transactions: `shardctl_<decision id>_<shard>`. The id names the
 * decision record on the catalog shard (shardctl.tx_decisions), the shard the participant, so that a
 * prepared transaction found on any server leads back to the one record that decides it.
 *
 * @example
 * gidOf('42', 'shard-1') // 'shardctl_42_shard-1'
 * parseGid('shardctl_42_shard-1') // { id: '42', shard: 'shard-1' }
 */

/** The prefix of every global id shardctl prepares (and the only ones recovery touches). */
export const GID_PREFIX = 'shardctl_';

/** The global id of the participant `shard` of distributed transaction `id`. */
export function gidOf(id: string, shard: string): string {
  return `${GID_PREFIX}${id}_${shard}`;
}

/** The decision id and shard of a shardctl global id, or undefined for anyone else's. */
export function parseGid(gid: string): { id: string; shard: string } | undefined {
  const m = /^shardctl_(\d+)_(.+)$/s.exec(gid);
  return m ? { id: m[1]!, shard: m[2]! } : undefined;
}
