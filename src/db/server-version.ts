import type { PoolClient } from 'pg';
import { ShardctlError } from '../errors.js';

/** The oldest PostgreSQL major shardctl runs against (publication row filters of online moves, `pg_stat_subscription_stats`). */
export const OLDEST_SUPPORTED_MAJOR = 15;

/** The newest major the suite proves; newer ones are accepted (catalogs are read by name, not assumed). */
export const NEWEST_TESTED_MAJOR = 18;

/** A server's version as shardctl needs it. */
export interface ServerVersion {
  /** `server_version_num`, for example 150012. */
  num: number;
  /** The major, for example 15. */
  major: number;
  /** `server_version`, for example `15.12` or `18.4 (Debian 18.4-1)`. */
  text: string;
}

/**
 * Reads the server's version in one round trip.
 *
 * @example
 * (await readServerVersion(client)).major // 17
 */
export async function readServerVersion(client: PoolClient): Promise<ServerVersion> {
  const r = await client.query<{ num: string; text: string }>(
    "SELECT current_setting('server_version_num') AS num, current_setting('server_version') AS text",
  );
  const num = Number(r.rows[0]!.num);
  return { num, major: Math.floor(num / 10000), text: r.rows[0]!.text };
}

/**
 * The refusal of a server too old for shardctl, or undefined when its version is supported. The one
 * place the minimum lives: ShardPools asks it on the first connection of every shard.
 *
 * @example
 * unsupportedServer({ num: 140011, major: 14, text: '14.11' }, 'shard-2')?.code // 'UNSUPPORTED_SERVER'
 * unsupportedServer({ num: 150012, major: 15, text: '15.12' }, 'shard-2') // undefined
 */
export function unsupportedServer(version: ServerVersion, shard: string): ShardctlError | undefined {
  if (version.major >= OLDEST_SUPPORTED_MAJOR) return undefined;
  return new ShardctlError(
    `shard ${shard} runs PostgreSQL ${version.text}: shardctl supports PostgreSQL ${OLDEST_SUPPORTED_MAJOR} to ${NEWEST_TESTED_MAJOR}`,
    {
      code: 'UNSUPPORTED_SERVER',
      shard,
      hint: `upgrade the server to PostgreSQL ${OLDEST_SUPPORTED_MAJOR} or newer (pg_upgrade), or add a shard on a newer server and move this one's tenants there with a PostgreSQL-native tool; shardctl shards --check still reports it`,
      details: { serverVersion: version.text, serverVersionNum: version.num },
    },
  );
}
