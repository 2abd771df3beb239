import type { Command } from 'commander';
import { abortMove, ExitCode, moveTenant, planMove, resumeMove, ShardctlError, type MoveEvent, type MovePreview, type MoveRecord } from '../../index.js';
import { confirm } from '../confirm.js';
import { formatBytes, globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';
import { createProgress } from '../progress.js';
import { addFleetOptions, runFleet, wantsFleet, type FleetOptions } from './rebalance-fleet.js';

interface RebalanceOptions extends FleetOptions {
  tenant?: string;
  to?: string;
  dryRun?: boolean;
  yes?: boolean;
  keepSource?: boolean;
  resume?: string;
  abort?: string;
}

function moveId(raw: string, flag: string): number {
  if (!/^\d+$/.test(raw)) throw new ShardctlError(`${flag} needs a move id (a number), got "${raw}"`, { code: 'USAGE', exitCode: ExitCode.Usage });
  return Number(raw);
}

/** Renders a move preview as a table. */
export async function showPreview(ctx: CliContext, p: MovePreview): Promise<void> {
  out(ctx, `move tenant ${p.tenant}: ${p.source} -> ${p.target} (${p.rows.toLocaleString('en-US')} rows, ${formatBytes(p.bytes)}, about ${p.estimateSeconds} s)`);
  await outTable(ctx, ['table (copy order)', 'rows', 'size'], p.tables.map((t) => [t.table, t.rows.toLocaleString('en-US'), formatBytes(t.bytes)]));
}

function describe(m: MoveRecord): string {
  return `move ${m.id}: tenant ${m.tenant} ${m.source} -> ${m.target}: ${m.state}`;
}

function progressText(e: MoveEvent, started: number): string {
  if (e.phase === 'copying' && e.bytes !== undefined) {
    const s = (performance.now() - started) / 1000;
    const rate = e.bytes / Math.max(s, 0.001);
    const eta = e.totalBytes ? Math.max(0, (e.totalBytes * 1.15 - e.bytes) / rate) : undefined;
    return `move ${e.moveId}: copying ${e.table}: ${e.rows !== undefined ? `${e.rows.toLocaleString('en-US')} rows, ` : ''}${formatBytes(e.bytes)} (${formatBytes(rate)}/s${eta !== undefined ? `, ETA ${eta.toFixed(0)} s` : ''})`;
  }
  return `move ${e.moveId}: ${e.phase}${e.table ? ` ${e.table}` : ''}${e.rows !== undefined ? ` ${e.rows.toLocaleString('en-US')} rows` : ''}${e.message ? `: ${e.message}` : ''}`;
}

/** `shardctl rebalance`: move one tenant (fenced, verified, resumable), or plan and apply fleet moves. */
export function registerRebalance(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('rebalance')
    .description('move a tenant to another shard (--tenant ID --to SHARD), resume or abort a move, or plan and apply fleet moves')
    .option('--tenant <id>', 'tenant to move')
    .option('--to <shard>', 'target shard')
    .option('--dry-run', 'print the plan and stop')
    .option('--yes', 'do not ask for confirmation')
    .option('--keep-source', 'keep the source rows after the switch (remove them later with `shardctl moves cleanup ID`)')
    .option('--resume <id>', 'continue a move from its journal')
    .option('--abort <id>', 'undo a move that has not switched');
  addFleetOptions(cmd);
  cmd.action(async (opts: RebalanceOptions, command: Command) => {
    const map = await mapOf(command, ctx);
    const json = globals(command).json;
    if (wantsFleet(opts)) return runFleet(map, opts, command, ctx);
    const progress = await createProgress(command, ctx);
    const started = performance.now();
    const onProgress = (e: MoveEvent) => progress.update(progressText(e, started), e);
    const timeoutMs = timeoutOf(command);
    let move: MoveRecord;
    try {
      if (opts.resume !== undefined) {
        move = (await resumeMove(map, moveId(opts.resume, '--resume'), { onProgress, timeoutMs })).move;
      } else if (opts.abort !== undefined) {
        move = (await abortMove(map, moveId(opts.abort, '--abort'), { onProgress, timeoutMs })).move;
      } else {
        if (opts.tenant === undefined || opts.to === undefined) {
          throw new ShardctlError('rebalance needs --tenant ID --to SHARD (or --resume ID, --abort ID, --plan, --apply, --drain SHARD, --freeze)', { code: 'USAGE', exitCode: ExitCode.Usage });
        }
        if (opts.dryRun) {
          const preview = await planMove(map, opts.tenant, opts.to, { timeoutMs });
          if (json) return outJson(ctx, { dryRun: true, preview });
          await showPreview(ctx, preview);
          return out(ctx, 'dry run: nothing changed');
        }
        const result = await moveTenant(map, opts.tenant, opts.to, {
          onProgress,
          timeoutMs,
          keepSource: opts.keepSource ?? false,
          confirm: async (preview) => {
            if (opts.yes) return true;
            if (!json) await showPreview(ctx, preview);
            const answer = await confirm(ctx, `move tenant ${preview.tenant} from ${preview.source} to ${preview.target}?`);
            if (answer === undefined) throw new ShardctlError('no terminal to confirm on: pass --yes to move without asking', { code: 'CONFIRM_NEEDED', exitCode: ExitCode.Usage });
            return answer;
          },
        });
        move = result.move;
      }
    } catch (e) {
      progress.fail();
      throw e;
    }
    progress.done(describe(move));
    if (json) return outJson(ctx, { move });
    out(ctx, describe(move));
    if (move.state === 'switched' && move.keepSource) out(ctx, `source rows kept on ${move.source}: remove them with \`shardctl moves cleanup ${move.id}\``);
  });
}
