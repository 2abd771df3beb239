import type { Shard, ShardMap } from '../config/shard-map.js';
import { forEachShard } from '../db/for-each-shard.js';
import type { ShardPools } from '../db/shard-pools.js';
import { readDecisions } from '../tx/decisions.js';
import { listPrepared } from '../tx/prepared.js';

/** A finding of the in-doubt check, in verify's finding shape (kind `in-doubt-transaction`). */
export interface InDoubtFinding {
  kind: 'in-doubt-transaction';
  shard: string;
  message: string;
  details: { gid: string; id: string; ageSeconds: number; preparedAt: string; decision: string };
}

/**
 * shardctl transactions prepared on the shards for at least `afterMs` (a live coordinator finishes its
 * own within milliseconds), each with its age and the decision its record holds: `commit` or `abort`
 * (recover ends it so), or `none` (the coordinator is still deciding, or died before: recover decides).
 * Reads only.
 *
 * @example
 * await inDoubtFindings(map, pools, map.shards, 5000) // [{ kind: 'in-doubt-transaction', shard: 'shard-1', ... }]
 */
export async function inDoubtFindings(
  map: ShardMap,
  pools: ShardPools,
  shards: Shard[],
  afterMs: number,
): Promise<InDoubtFinding[]> {
  const listed = await forEachShard(shards, (s) => pools.withShard(s.name, (c) => listPrepared(c, s.name, afterMs)));
  const prepared = listed.flatMap((r) => (r.status === 'ok' ? r.value : []));
  if (prepared.length === 0) return [];
  const decisions = await pools.withShard(map.catalog, (c) => readDecisions(c)).catch(() => undefined);
  return prepared.map((t) => {
    const decision = decisions ? (decisions.get(t.id)?.state ?? 'none') : 'unknown (catalog unreachable)';
    return {
      kind: 'in-doubt-transaction',
      shard: t.shard,
      message: `prepared transaction ${t.gid} in doubt for ${t.ageSeconds.toFixed(1)} s, decision: ${decision}; it holds its locks until \`shardctl recover\` ends it`,
      details: { gid: t.gid, id: t.id, ageSeconds: t.ageSeconds, preparedAt: t.preparedAt, decision },
    };
  });
}
