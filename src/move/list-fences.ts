import type { ShardMap } from '../config/shard-map.js';
import { forEachShard, type ShardResult } from '../db/for-each-shard.js';
import { ShardPools } from '../db/shard-pools.js';
import { ExitCode, ShardctlError } from '../errors.js';
import { parseTenant, tenantText } from '../placement/tenant-key.js';
import { listFences, removeFence, type Fence } from './fence.js';
import { replicationLeftovers, type ReplicationLeftover } from '../catalog/leftovers.js';
import { listMoves, type MoveRecord } from './move-journal.js';

/**
 * Lists the fences of every shard (reads only).
 *
 * @example
 * const results = await fencesOf(map); // one ShardResult<Fence[]> per shard
 */
export async function fencesOf(map: ShardMap, options: { timeoutMs?: number } = {}): Promise<ShardResult<Fence[]>[]> {
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 1,
    readOnly: true,
  });
  try {
    return await forEachShard(map.shards, (s) => pools.withShard(s.name, (c) => listFences(c, s.name)));
  } finally {
    await pools.close();
  }
}

/**
 * Removes a tenant's fence from one shard: writes of the tenant are accepted there again. Refuses
 * while a move of the tenant is in flight.
 *
 * @example
 * await removeTenantFence(map, 'shard-1', 123);
 */
export async function removeTenantFence(
  map: ShardMap,
  shard: string,
  tenantValue: unknown,
  options: { timeoutMs?: number } = {},
): Promise<boolean> {
  const tenant = tenantText(parseTenant(tenantValue, map.shardKey.type));
  const pools = await ShardPools.open(map, { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 1 });
  try {
    pools.shard(shard);
    const moves = await pools.withShard(map.catalog, (c) => listMoves(c, { tenant }));
    const inflight = moves.find((m) => !['done', 'aborted'].includes(m.state) && m.source === shard);
    if (inflight) {
      throw new ShardctlError(
        `move ${inflight.id} of tenant ${tenant} is ${inflight.state}: its fence protects the copy`,
        {
          code: 'MOVE_IN_FLIGHT',
          exitCode: ExitCode.Failed,
          hint: `finish or abort the move first (shardctl rebalance --resume ${inflight.id} / --abort ${inflight.id})`,
        },
      );
    }
    return await pools.withShard(shard, (c) => removeFence(c, tenant));
  } finally {
    await pools.close();
  }
}

/**
 * Lists the moves of the journal, newest first (reads only).
 *
 * @example
 * (await movesOf(map)).map((m) => `${m.id} ${m.state}`)
 */
export async function movesOf(
  map: ShardMap,
  options: { timeoutMs?: number; tenant?: string } = {},
): Promise<MoveRecord[]> {
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 1,
    readOnly: true,
  });
  try {
    return await pools.withShard(map.catalog, (c) =>
      listMoves(c, options.tenant !== undefined ? { tenant: options.tenant } : {}),
    );
  } finally {
    await pools.close();
  }
}

/**
 * shardctl's replication slots on every shard, with the WAL each keeps on disk: an online move's
 * slot while it runs, or one a crash left (it fills the source's disk until dropped). Reads only.
 *
 * @example
 * (await moveSlotsOf(map)).flatMap((r) => (r.status === 'ok' ? r.value : []))
 */
export async function moveSlotsOf(
  map: ShardMap,
  options: { timeoutMs?: number } = {},
): Promise<ShardResult<ReplicationLeftover[]>[]> {
  const pools = await ShardPools.open(map, {
    connectTimeoutMs: options.timeoutMs ?? 5000,
    maxPerShard: 1,
    readOnly: true,
  });
  try {
    return await forEachShard(map.shards, (s) =>
      pools.withShard(s.name, async (c) =>
        (await replicationLeftovers(c)).filter((r) => r.kind === 'replication-slot'),
      ),
    );
  } finally {
    await pools.close();
  }
}
