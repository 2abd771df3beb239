import type { Command } from 'commander';
import { cleanupMove, ExitCode, movesOf, ShardctlError } from '../../index.js';
import { globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';

/** `shardctl moves`: the move journal; `moves cleanup ID` removes kept source rows. */
export function registerMoves(program: Command, ctx: CliContext): void {
  const moves = program
    .command('moves')
    .description('list tenant moves with state, shards, rows and duration')
    .option('--tenant <id>', 'only moves of this tenant')
    .action(async (opts: { tenant?: string }, cmd: Command) => {
      const map = await mapOf(cmd, ctx);
      const list = await movesOf(map, { timeoutMs: timeoutOf(cmd), ...(opts.tenant !== undefined ? { tenant: opts.tenant } : {}) });
      if (globals(cmd).json) return outJson(ctx, { moves: list });
      if (list.length === 0) return out(ctx, 'no moves');
      await outTable(
        ctx,
        ['id', 'tenant', 'from', 'to', 'state', 'rows', 'duration', 'error'],
        list.map((m) => [
          m.id,
          m.tenant,
          m.source,
          m.target,
          m.state === 'failed' ? `failed in ${m.failedIn}` : m.state,
          m.plan.tables.reduce((a, t) => a + t.rows, 0).toLocaleString('en-US'),
          `${((new Date(m.updatedAt).getTime() - new Date(m.createdAt).getTime()) / 1000).toFixed(1)} s`,
          m.error ?? '',
        ]),
      );
    });
  moves
    .command('cleanup')
    .description('delete the source rows a switched move kept (--keep-source) and finish it')
    .argument('<id>', 'move id')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      if (!/^\d+$/.test(id)) throw new ShardctlError(`move id must be a number, got "${id}"`, { code: 'USAGE', exitCode: ExitCode.Usage });
      const map = await mapOf(cmd, ctx);
      const { move } = await cleanupMove(map, Number(id), { timeoutMs: timeoutOf(cmd) });
      if (globals(cmd).json) return outJson(ctx, { move });
      out(ctx, `move ${move.id}: ${move.state}`);
    });
}
