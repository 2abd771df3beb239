import type { Command } from 'commander';
import { ExitCode, fencesOf, removeTenantFence, ShardctlError } from '../../index.js';
import { confirm } from '../confirm.js';
import { globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';

/** `shardctl fences`: tenants whose writes a shard rejects; `fences remove` lifts one, explicitly. */
export function registerFences(program: Command, ctx: CliContext): void {
  const fences = program
    .command('fences')
    .description('list fences: tenants whose writes a shard rejects (during a move, and after it as a tombstone)')
    .action(async (_opts: unknown, cmd: Command) => {
      const map = await mapOf(cmd, ctx);
      const results = await fencesOf(map, { timeoutMs: timeoutOf(cmd) });
      const failed = results.filter((r) => r.status === 'failed');
      if (failed.length > 0) ctx.exitCode = ExitCode.Failed;
      const rows = results.flatMap((r) => (r.status === 'ok' ? r.value : []));
      if (globals(cmd).json)
        return outJson(ctx, {
          fences: rows,
          unreachable: failed.map((f) => (f.status === 'failed' ? { shard: f.shard, error: f.error.message } : {})),
        });
      if (rows.length === 0) out(ctx, 'no fences');
      else
        await outTable(
          ctx,
          ['shard', 'tenant', 'move', 'target', 'since', 'reason'],
          rows.map((f) => [f.shard, f.tenant, f.moveId, f.target, f.createdAt, f.reason]),
        );
      for (const f of failed) if (f.status === 'failed') out(ctx, `${f.shard}: ${f.error.message}`);
    });
  fences
    .command('remove')
    .description('lift the fence of a tenant on a shard: its writes are accepted there again')
    .requiredOption('--tenant <id>', 'tenant')
    .requiredOption('--shard <name>', 'shard holding the fence')
    .option('--yes', 'do not ask for confirmation')
    .action(async (opts: { tenant: string; shard: string; yes?: boolean }, cmd: Command) => {
      const map = await mapOf(cmd, ctx);
      const ok = opts.yes || (await confirm(ctx, `accept writes of tenant ${opts.tenant} on ${opts.shard} again?`));
      if (ok === undefined)
        throw new ShardctlError('no terminal to confirm on: pass --yes to remove the fence', {
          code: 'CONFIRM_NEEDED',
          exitCode: ExitCode.Usage,
        });
      if (!ok) return out(ctx, 'nothing changed');
      const removed = await removeTenantFence(map, opts.shard, opts.tenant, { timeoutMs: timeoutOf(cmd) });
      if (globals(cmd).json) return outJson(ctx, { removed });
      out(
        ctx,
        removed
          ? `fence of tenant ${opts.tenant} on ${opts.shard} removed`
          : `no fence of tenant ${opts.tenant} on ${opts.shard}`,
      );
    });
}
