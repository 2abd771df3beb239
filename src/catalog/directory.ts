import type { PoolClient } from 'pg';

/** The placement directory: tenants (canonical text form) whose shard differs from the rule. */
export interface Directory {
  /** Counter bumped on every change; -1 when the catalog has no shardctl schema yet. */
  version: number;
  /** tenant text to shard name. */
  entries: Map<string, string>;
}

/**
 * Reads the directory version only: a cheap query that lets routers skip re-reading unchanged entries.
 * A database without the shardctl schema reads as -1 (an empty directory).
 *
 * @example
 * await readDirectoryVersion(client) // 0 after the schema was created
 */
export async function readDirectoryVersion(client: PoolClient): Promise<number> {
  // Two statements: a query naming a missing table fails at parse time, even under a CASE.
  const exists = await client.query<{ t: string | null }>(
    "SELECT to_regclass('shardctl.directory_version')::text AS t",
  );
  if (!exists.rows[0]?.t) return -1;
  const r = await client.query<{ v: string }>('SELECT version::text AS v FROM shardctl.directory_version');
  return r.rows[0] ? Number(r.rows[0].v) : -1;
}

/**
 * Reads the whole directory (or only the given tenants) in one consistent snapshot. A missing
 * `shardctl` schema reads as an empty directory: read-only commands never create anything.
 *
 * @example
 * const dir = await readDirectory(client, ['123']);
 */
export async function readDirectory(client: PoolClient, tenants?: string[]): Promise<Directory> {
  const version = await readDirectoryVersion(client);
  if (version < 0) return { version, entries: new Map() };
  const r = tenants
    ? await client.query<{ tenant: string; shard: string }>(
        'SELECT tenant, shard FROM shardctl.placements WHERE tenant = ANY($1::text[])',
        [tenants],
      )
    : await client.query<{ tenant: string; shard: string }>('SELECT tenant, shard FROM shardctl.placements');
  return { version, entries: new Map(r.rows.map((row) => [row.tenant, row.shard])) };
}

/**
 * Points a tenant at a shard in the directory, or removes its entry when the shard is the rule's
 * own (so that the directory only holds exceptions). Runs on the caller's client so that it can share
 * a transaction with the move journal.
 *
 * @example
 * await setPlacement(client, '123', 'shard-2', { ruleShard: 'shard-1', moveId: 7 });
 */
export async function setPlacement(
  client: PoolClient,
  tenant: string,
  shard: string,
  options: { ruleShard: string; moveId?: number | null },
): Promise<void> {
  if (shard === options.ruleShard) {
    await client.query('DELETE FROM shardctl.placements WHERE tenant = $1', [tenant]);
    return;
  }
  await client.query(
    `INSERT INTO shardctl.placements (tenant, shard, move_id) VALUES ($1, $2, $3)
     ON CONFLICT (tenant) DO UPDATE SET shard = excluded.shard, move_id = excluded.move_id, updated_at = now()`,
    [tenant, shard, options.moveId ?? null],
  );
}

/**
 * The channel on which the catalog announces each new directory version (catalog step 12): the payload
 * is the version. Applications in any language may LISTEN on it to re-read the directory at once.
 *
 * @example
 * await client.query(`LISTEN ${DIRECTORY_CHANNEL}`);
 */
export const DIRECTORY_CHANNEL = 'shardctl_directory';
