import type { ShardMap } from '../config/shard-map.js';
import { createRouter, type Location } from '../router/create-router.js';
import { parseTenant } from '../placement/tenant-key.js';

/** Result of {@link locateTenants}. */
export interface LocateReport {
  /** True when computed from the map alone (`--offline`): directory overrides were not consulted. */
  offline: boolean;
  /** Directory version read (-1 offline or when the catalog has no shardctl schema). */
  directoryVersion: number;
  /**
   * True when the catalog records the placement rule (the answers come from the rule and the
   * directory). False offline, and on a fleet nobody adopted: then every answer was checked against
   * the shards' rows.
   */
  ruleRecorded: boolean;
  locations: Location[];
  /** Answers the rows gave against the map's rule (each names `shardctl adopt`), and what was not checked. */
  warnings: string[];
}

/**
 * Finds the shard of each tenant: the placement rule, overridden by the catalog's directory unless
 * `offline`. Every tenant value is validated before anything connects. When the catalog records no
 * rule (a fleet placed by hand or by another tool), the map's answer is not trusted: each tenant is
 * looked for on every shard, and the shard holding its rows is the answer (with a warning when it is
 * not the map's); a tenant on two shards is refused.
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
    // No fleet scan: each tenant is checked on its own, by key index.
    unrecordedRule: 'refuse',
    listen: false,
    pool: { connectTimeoutMs: options.timeoutMs ?? 5000, maxPerShard: 1 },
  });
  try {
    const locations = router.offline
      ? tenants.map((t) => router.locate(t))
      : await Promise.all(tenants.map((t) => router.locateVerified(t)));
    const warnings = locations.flatMap((l) => (l.warning ? [l.warning] : []));
    return {
      offline: router.offline,
      directoryVersion: router.directoryVersion,
      ruleRecorded: router.ruleRecorded,
      locations,
      warnings,
    };
  } finally {
    await router.close();
  }
}
