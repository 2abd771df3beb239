import type { PoolClient } from 'pg';

/** A move not in a final state, or a fence that no finished move explains. */
export interface MoveLeftover {
  kind: 'unfinished-move' | 'orphan-fence';
  tenant?: string;
  message: string;
  details: unknown;
  /** Names of replication objects the move owns (they are not orphans while it is unfinished). */
  objects?: string[];
}

async function exists(client: PoolClient, table: string): Promise<boolean> {
  const r = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [table]);
  return Boolean(r.rows[0]?.t);
}

/**
 * Reads the move journal and the fences of a shard (where they exist) and lists moves that are not
 * done or aborted, and fences whose move is not finished (or unknown). Reads only.
 *
 * @example
 * await moveLeftovers(client) // [{ kind: 'unfinished-move', tenant: '7', message: 'move 3 of tenant 7 is stuck in copying', ... }]
 */
export async function moveLeftovers(client: PoolClient): Promise<MoveLeftover[]> {
  const out: MoveLeftover[] = [];
  const hasMoves = await exists(client, 'shardctl.moves');
  if (hasMoves) {
    const r = await client.query<{ id: string; tenant: string; state: string; source: string; target: string; updated: Date | null }>(
      `SELECT id::text, tenant, state, source_shard AS source, target_shard AS target, updated_at AS updated
         FROM shardctl.moves WHERE state NOT IN ('done', 'aborted') ORDER BY id`,
    );
    for (const m of r.rows) {
      out.push({
        kind: 'unfinished-move',
        tenant: m.tenant,
        message: `move ${m.id} of tenant ${m.tenant} (${m.source} -> ${m.target}) is ${m.state}${m.updated ? ` since ${new Date(m.updated).toISOString()}` : ''}: resume it with \`shardctl rebalance --resume ${m.id}\` or abort it with \`shardctl rebalance --abort ${m.id}\``,
        details: m,
        objects: [`shardctl_move_${m.id}`, `shardctl_move_${m.id}_pub`, `shardctl_move_${m.id}_sub`],
      });
    }
  }
  if (await exists(client, 'shardctl.fences')) {
    const finished = hasMoves ? `AND NOT EXISTS (SELECT 1 FROM shardctl.moves m WHERE m.id = f.move_id AND m.state IN ('switched', 'cleaned', 'done'))` : '';
    const r = await client.query<{ tenant: string; move_id: string | null }>(`SELECT f.tenant, f.move_id::text FROM shardctl.fences f WHERE true ${finished} ORDER BY 1`);
    for (const f of r.rows) {
      out.push({
        kind: 'orphan-fence',
        tenant: f.tenant,
        message: `fence on tenant ${f.tenant}${f.move_id ? ` from move ${f.move_id}` : ''} has no finished move: writes for this tenant are rejected here (see \`shardctl fences\`)`,
        details: f,
      });
    }
  }
  return out;
}
