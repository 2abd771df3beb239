import type { PoolClient } from 'pg';
import { parseGid } from './gid.js';

/** A shardctl transaction prepared on a shard and not yet committed or rolled back. */
export interface PreparedTransaction {
  /** Shard it was found on. */
  shard: string;
  /** Its global id (`shardctl_<id>_<shard>`). */
  gid: string;
  /** The id of its decision record on the catalog shard. */
  id: string;
  /** When it was prepared (ISO time). */
  preparedAt: string;
  /** Age since PREPARE, seconds. */
  ageSeconds: number;
  /** Its transaction id on the shard (for `pg_xact_status`). */
  xid: string;
}

/**
 * The shardctl transactions prepared in the current database (pg_prepared_xacts lists every database
 * of the server; COMMIT PREPARED works only in the database that prepared). `minAgeMs` leaves out
 * those prepared more recently (a live coordinator is about to finish them).
 *
 * @example
 * await listPrepared(client, 'shard-1') // [{ gid: 'shardctl_42_shard-1', id: '42', ageSeconds: 310.2, ... }]
 */
export async function listPrepared(client: PoolClient, shard: string, minAgeMs = 0): Promise<PreparedTransaction[]> {
  const r = await client.query<{ gid: string; prepared: Date; secs: number; xid: string }>(
    `SELECT gid, prepared, extract(epoch FROM clock_timestamp() - prepared)::float8 AS secs, transaction::text AS xid
       FROM pg_prepared_xacts
      WHERE database = current_database() AND starts_with(gid, 'shardctl_')
        AND prepared <= clock_timestamp() - make_interval(secs => $1::float8 / 1000)
      ORDER BY prepared`,
    [minAgeMs],
  );
  return r.rows.flatMap((x) => {
    const g = parseGid(x.gid);
    return g
      ? [
          {
            shard,
            gid: x.gid,
            id: g.id,
            preparedAt: new Date(x.prepared).toISOString(),
            ageSeconds: Math.max(0, x.secs),
            xid: x.xid,
          },
        ]
      : [];
  });
}

/**
 * `COMMIT PREPARED` or `ROLLBACK PREPARED` of a global id (gids are text literals, not parameters).
 *
 * @example
 * finishSql('shardctl_42_shard-1', true) // "COMMIT PREPARED 'shardctl_42_shard-1'"
 */
export function finishSql(gid: string, commit: boolean): string {
  return `${commit ? 'COMMIT' : 'ROLLBACK'} PREPARED '${gid.replace(/'/g, "''")}'`;
}
