import type { Command } from 'commander';
import {
  cleanupMove,
  moveReport,
  moveSlotsOf,
  movesOf,
  tenantsOf,
  type MoveRecord,
  type MoveReport,
} from '../../index.js';
import { usage } from '../options.js';
import { formatBytes, globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';

/** `shardctl moves`: the move journal; `moves cleanup ID` removes kept source rows. */
export function registerMoves(program: Command, ctx: CliContext): void {
  const moves = program
    .command('moves')
    .description('list tenant moves with state, shards, rows and duration')
    .option('--tenant <id>', 'only moves of this tenant')
    .action(async (opts: { tenant?: string }, cmd: Command) => {
      const map = await mapOf(cmd, ctx);
      const [list, slotResults] = await Promise.all([
        movesOf(map, { timeoutMs: timeoutOf(cmd), ...(opts.tenant !== undefined ? { tenant: opts.tenant } : {}) }),
        moveSlotsOf(map, { timeoutMs: timeoutOf(cmd) }),
      ]);
      // A slot keeps WAL on its server until dropped: shown with every listing, whatever the filter.
      const slots = slotResults.flatMap((r) =>
        r.status === 'ok' ? r.value.map((s) => ({ shard: r.shard, ...s })) : [],
      );
      const unreachable = slotResults.filter((r) => r.status === 'failed').map((r) => r.shard);
      if (globals(cmd).json)
        return outJson(ctx, {
          moves: list.map((m) => ({ ...m, report: moveReport(m) })),
          replicationSlots: slots,
          ...(unreachable.length ? { unreachable } : {}),
        });
      const showSlots = () => {
        for (const s of slots) {
          const owner = list.find((m) => m.plan.replication === s.name);
          out(
            ctx,
            `replication slot ${s.shard}: ${s.name} retains ${formatBytes(s.retainedWalBytes ?? 0)} of WAL${s.active ? ' (streaming)' : ' (inactive)'}${owner ? ` (move ${owner.id}, ${owner.state})${slotNextStep(owner)}` : ''}`,
          );
        }
        for (const u of unreachable) out(ctx, `${u}: unreachable, its replication slots are unknown`);
      };
      if (list.length === 0) {
        out(ctx, 'no moves');
        return showSlots();
      }
      await outTable(
        ctx,
        ['id', 'tenant', 'from', 'to', 'mode', 'state', 'rows', 'duration', 'writes paused', 'error'],
        list.map((m) => [
          m.id,
          tenantsOf(m).join(','),
          m.source,
          m.target,
          m.mode,
          m.state === 'failed' ? `failed in ${m.failedIn}` : m.state,
          m.plan.tables.reduce((a, t) => a + t.rows, 0).toLocaleString('en-US'),
          `${((new Date(m.updatedAt).getTime() - new Date(m.createdAt).getTime()) / 1000).toFixed(1)} s`,
          pausedCell(m),
          m.error ?? '',
        ]),
      );
      showSlots();
    });
  registerCleanup(moves, ctx);
}

/** A failed move's slot keeps WAL until the move is resumed or aborted: say so, with both commands. */
function slotNextStep(m: MoveRecord): string {
  if (m.state !== 'failed') return '';
  return `: \`shardctl rebalance --resume ${m.id}\` continues it, \`shardctl rebalance --abort ${m.id}\` drops the slot`;
}

/** The pause that switched an online move (the whole copy for a fenced one, which rejects writes throughout). */
function pausedCell(m: MoveRecord): string {
  if (m.mode === 'fenced') return 'whole copy';
  const r = moveReport(m);
  return r.switchPauseMs !== undefined ? `${r.switchPauseMs} ms` : '';
}

/**
 * Prints a move's report: rows and bytes per table, throughput, every pause attempt, lag, total time.
 *
 * @example
 * await showMoveReport(ctx, moveReport(move));
 */
export async function showMoveReport(ctx: CliContext, r: MoveReport): Promise<void> {
  const rate = r.bytesPerSecond !== undefined ? `, ${formatBytes(r.bytesPerSecond)}/s` : '';
  out(
    ctx,
    `capture: ${r.capture}; copied ${r.rows.toLocaleString('en-US')} rows, ${formatBytes(r.bytes)} in ${(r.copyMs / 1000).toFixed(1)} s${rate}; total ${(r.totalMs / 1000).toFixed(1)} s`,
  );
  if (r.captureReason) out(ctx, `capture chosen because ${r.captureReason}`);
  await outTable(
    ctx,
    ['table', 'rows copied', 'bytes copied', 'rows deleted on source'],
    r.tables.map((t) => [
      t.table,
      t.rows.toLocaleString('en-US'),
      formatBytes(t.bytes),
      r.deleted?.[t.table]?.toLocaleString('en-US') ?? '',
    ]),
  );
  for (const p of r.pauses)
    out(
      ctx,
      `pause attempt ${p.attempt}: writes paused ${p.ms} ms${p.lagSeconds !== undefined ? ` (replication lag before it ${Math.round(p.lagSeconds * 1000)} ms)` : ''}: ${p.outcome === 'switched' ? 'switched' : `fence lifted, ${p.outcome}`}`,
    );
}

function registerCleanup(moves: Command, ctx: CliContext): void {
  moves
    .command('cleanup')
    .description('delete the source rows a switched move kept (--keep-source) and finish it')
    .argument('<id>', 'move id')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      if (!/^\d+$/.test(id)) throw usage(`move id must be a number, got "${id}"`);
      const map = await mapOf(cmd, ctx);
      const { move } = await cleanupMove(map, Number(id), { timeoutMs: timeoutOf(cmd) });
      if (globals(cmd).json) return outJson(ctx, { move });
      out(ctx, `move ${move.id}: ${move.state}`);
    });
}
