import type { PoolClient } from 'pg';
import { listFences, type Fence } from '../move/fence.js';
import { listMoves, type MoveRecord } from '../move/move-journal.js';

/** A move not in a final state, or a fence that no move explains. */
export interface MoveLeftover {
  kind: 'unfinished-move' | 'orphan-fence';
  tenant?: string;
  message: string;
  details: unknown;
  /** Names of replication objects the move owns (they are not orphans while it is unfinished). */
  objects?: string[];
}

/** What one shard holds of the move machinery: its journal (the catalog's) and its fences. */
export interface MoveFacts {
  moves: MoveRecord[];
  fences: Fence[];
}

/** Reads the move journal and the fences of a shard (reads only; empty where shardctl never wrote). */
export async function readMoveFacts(client: PoolClient, shard: string): Promise<MoveFacts> {
  return { moves: await listMoves(client, { limit: 100_000 }), fences: await listFences(client, shard) };
}

/**
 * Judges the move machinery across shards: moves of the catalog's journal that are not done or
 * aborted, and fences whose move is unknown or aborted (a fence of a done move is a tombstone; one of
 * an unfinished move is reported with that move).
 *
 * @example
 * judgeMoves(catalogFacts.moves, allFences)
 */
export function judgeMoves(journal: MoveRecord[], fences: Fence[]): MoveLeftover[] {
  const out: MoveLeftover[] = [];
  for (const m of journal) {
    if (m.state === 'done' || m.state === 'aborted') continue;
    const what =
      m.state === 'failed'
        ? `failed in ${m.failedIn}${m.error ? ` (${m.error})` : ''}`
        : m.state === 'switched' && m.keepSource
          ? 'switched, source rows kept'
          : `stopped in ${m.state}`;
    const fix =
      m.state === 'switched' && m.keepSource
        ? `remove the source rows with \`shardctl moves cleanup ${m.id}\``
        : `resume it with \`shardctl rebalance --resume ${m.id}\`${['switched', 'cleaned'].includes(m.state) ? '' : ` or abort it with \`shardctl rebalance --abort ${m.id}\``}`;
    out.push({
      kind: 'unfinished-move',
      tenant: m.tenant,
      message: `move ${m.id} of tenant ${m.tenant} (${m.source} -> ${m.target}) ${what} since ${m.updatedAt}: ${fix}`,
      details: { id: m.id, state: m.state, source: m.source, target: m.target },
      // An online move's publication, slot and subscription share one name.
      objects: m.plan.replication ? [m.plan.replication] : [],
    });
  }
  const byId = new Map(journal.map((m) => [m.id, m]));
  for (const f of fences) {
    const m = f.moveId === null ? undefined : byId.get(f.moveId);
    if (m && m.state !== 'aborted') continue;
    out.push({
      kind: 'orphan-fence',
      tenant: f.tenant,
      message: `${f.shard}: fence on tenant ${f.tenant}${f.moveId !== null ? ` from move ${f.moveId} (${m ? m.state : 'not in the journal'})` : ''} has no finished move: writes of this tenant are rejected there; lift it with \`shardctl fences remove --tenant ${f.tenant} --shard ${f.shard}\` if that is wrong`,
      details: f,
    });
  }
  return out;
}
