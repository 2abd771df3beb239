import type { ShardMap } from '../config/shard-map.js';
import { createRouter, type Location } from '../router/create-router.js';
import { parseTenant } from '../placement/tenant-key.js';

/** Result of {@link locateTenants}. */
export interface LocateReport {
  /** True when computed from the map alone (`--offline`): directory overrides were not consulted. */
  offline: boolean;
  /** Directory version read (-1 offline or when the catalog has no shardctl schema). */
  directoryVersion: number;
  locations: Location[];
}

/**
 * Finds the shard of each tenant: the placement rule, overridden by the catalog's directory unless
 * `offline`. Every tenant value is validated before anything connects.
 *
 * @example
 * const { locations } = await locateTenants(map, ['123', '456'], { offline: true });
 */
export async function locateTenants(
  map: ShardMap,
  tenants: unknown[],
  options: { offline?: boolean; timeoutMs?: number } = {},
): Promise<LocateReport> {
  for (const t of tenants) parseTenant(t, map.shardKey.type);
  const router = await createRouter(map, {
    offline: options.offline ?? false,
    pool: { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 1 },
  });
  try {
    return {
      offline: router.offline,
      directoryVersion: router.directoryVersion,
      locations: tenants.map((t) => router.locate(t)),
    };
  } finally {
    await router.close();
  }
}
