import type { Command } from 'commander';
import {
  abortMove,
  ExitCode,
  moveTenant,
  planMove,
  resumeMove,
  ShardctlError,
  type MoveEvent,
  type MovePreview,
  type MoveRecord,
} from '../../index.js';
import { confirm } from '../confirm.js';
import { formatBytes, globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';
import { createProgress } from '../progress.js';
import { addFleetOptions, runFleet, wantsFleet, type FleetOptions } from './rebalance-fleet.js';

/** Options choosing how a move runs, shared by single and fleet moves. */
export interface ModeOptions {
  online?: boolean;
  offline?: boolean;
  allowOffline?: boolean;
  maxPause?: string;
}

/** Parses a duration: `250ms`, `1s`, `1.5s` or plain milliseconds. */
export function parseDuration(raw: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s)?$/.exec(raw.trim());
  if (!m)
    throw new ShardctlError(`${flag} needs a duration such as 500ms or 2s, got "${raw}"`, {
      code: 'USAGE',
      exitCode: ExitCode.Usage,
    });
  const ms = Number(m[1]) * (m[2] === 's' ? 1000 : 1);
  if (ms < 1)
    throw new ShardctlError(`${flag} must be at least 1ms, got "${raw}"`, { code: 'USAGE', exitCode: ExitCode.Usage });
  return Math.round(ms);
}

/** Move options from the mode flags (`--online` is the default). */
export function modeOptions(o: ModeOptions): { mode: 'online' | 'fenced'; allowOffline: boolean; maxPauseMs?: number } {
  if (o.offline && o.online)
    throw new ShardctlError('--online and --offline exclude each other', { code: 'USAGE', exitCode: ExitCode.Usage });
  return {
    mode: o.offline ? 'fenced' : 'online',
    allowOffline: o.allowOffline ?? false,
    ...(o.maxPause !== undefined ? { maxPauseMs: parseDuration(o.maxPause, '--max-pause') } : {}),
  };
}

/** Adds the mode flags to a command. */
export function addModeOptions(cmd: Command): void {
  cmd
    .option('--online', 'copy while writes continue and pause writes only for the switch (the default)')
    .option('--offline', "fenced move: reject the tenant's writes for the whole copy")
    .option('--allow-offline', 'move fenced where the servers cannot move online, instead of refusing')
    .option(
      '--max-pause <duration>',
      'longest write pause of an online move, e.g. 500ms or 2s; a drain that does not fit lifts the fence and retries',
      '1s',
    );
}

interface RebalanceOptions extends FleetOptions, ModeOptions {
  tenant?: string;
  to?: string;
  dryRun?: boolean;
  yes?: boolean;
  keepSource?: boolean;
  resume?: string;
  abort?: string;
}

function moveId(raw: string, flag: string): number {
  if (!/^\d+$/.test(raw))
    throw new ShardctlError(`${flag} needs a move id (a number), got "${raw}"`, {
      code: 'USAGE',
      exitCode: ExitCode.Usage,
    });
  return Number(raw);
}

/** Renders a move preview as a table. */
export async function showPreview(ctx: CliContext, p: MovePreview): Promise<void> {
  out(
    ctx,
    `move tenant ${p.tenant}: ${p.source} -> ${p.target} (${p.rows.toLocaleString('en-US')} rows, ${formatBytes(p.bytes)}, about ${p.estimateSeconds} s), ${p.mode === 'online' ? 'online: writes pause only for the switch' : "fenced: the tenant's writes are rejected until the switch"}`,
  );
  if (p.onlineProblems) out(ctx, `not online because: ${p.onlineProblems.join('; ')}`);
  await outTable(
    ctx,
    ['table (copy order)', 'rows', 'size'],
    p.tables.map((t) => [t.table, t.rows.toLocaleString('en-US'), formatBytes(t.bytes)]),
  );
}

function describe(m: MoveRecord): string {
  return `move ${m.id}: tenant ${m.tenant} ${m.source} -> ${m.target}: ${m.state}`;
}

function progressText(e: MoveEvent, started: number): string {
  if (e.phase === 'replicating' && e.lagBytes !== undefined) {
    const secs = e.lagSeconds ?? 0;
    const lag = secs >= 1 ? `${secs.toFixed(1)} s` : `${Math.round(secs * 1000)} ms`;
    return `move ${e.moveId}: replicating, ${formatBytes(e.lagBytes)} of WAL unconfirmed, lag ${lag}${e.message ? `: ${e.message}` : ''}`;
  }
  if ((e.phase === 'copying' || e.phase === 'syncing') && e.bytes !== undefined) {
    const s = (performance.now() - started) / 1000;
    const rate = e.bytes / Math.max(s, 0.001);
    const eta = e.totalBytes ? Math.max(0, (e.totalBytes * 1.15 - e.bytes) / rate) : undefined;
    return `move ${e.moveId}: ${e.phase === 'syncing' ? 'copying (writes continue)' : 'copying'} ${e.table}: ${e.rows !== undefined ? `${e.rows.toLocaleString('en-US')} rows, ` : ''}${formatBytes(e.bytes)} (${formatBytes(rate)}/s${eta !== undefined ? `, ETA ${eta.toFixed(0)} s` : ''})`;
  }
  return `move ${e.moveId}: ${e.phase}${e.table ? ` ${e.table}` : ''}${e.rows !== undefined ? ` ${e.rows.toLocaleString('en-US')} rows` : ''}${e.message ? `: ${e.message}` : ''}`;
}

/** `shardctl rebalance`: move one tenant (fenced, verified, resumable), or plan and apply fleet moves. */
export function registerRebalance(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('rebalance')
    .description(
      'move a tenant to another shard (--tenant ID --to SHARD), resume or abort a move, or plan and apply fleet moves',
    )
    .option('--tenant <id>', 'tenant to move')
    .option('--to <shard>', 'target shard')
    .option('--dry-run', 'print the plan and stop')
    .option('--yes', 'do not ask for confirmation')
    .option(
      '--keep-source',
      'keep the source rows after the switch (remove them later with `shardctl moves cleanup ID`)',
    )
    .option('--resume <id>', 'continue a move from its journal')
    .option('--abort <id>', 'undo a move that has not switched');
  addModeOptions(cmd);
  addFleetOptions(cmd);
  cmd.action(async (opts: RebalanceOptions, command: Command) => {
    const map = await mapOf(command, ctx);
    const json = globals(command).json;
    if (wantsFleet(opts)) return runFleet(map, opts, command, ctx);
    const progress = await createProgress(command, ctx);
    const started = performance.now();
    const onProgress = (e: MoveEvent) => progress.update(progressText(e, started), e);
    const timeoutMs = timeoutOf(command);
    const mode = modeOptions(opts);
    let move: MoveRecord;
    try {
      if (opts.resume !== undefined) {
        move = (
          await resumeMove(map, moveId(opts.resume, '--resume'), {
            onProgress,
            timeoutMs,
            ...(mode.maxPauseMs ? { maxPauseMs: mode.maxPauseMs } : {}),
          })
        ).move;
      } else if (opts.abort !== undefined) {
        move = (await abortMove(map, moveId(opts.abort, '--abort'), { onProgress, timeoutMs })).move;
      } else {
        if (opts.tenant === undefined || opts.to === undefined) {
          throw new ShardctlError(
            'rebalance needs --tenant ID --to SHARD (or --resume ID, --abort ID, --plan, --apply, --drain SHARD, --freeze)',
            { code: 'USAGE', exitCode: ExitCode.Usage },
          );
        }
        if (opts.dryRun) {
          const preview = await planMove(map, opts.tenant, opts.to, {
            timeoutMs,
            mode: mode.mode,
            allowOffline: mode.allowOffline,
          });
          if (json) return outJson(ctx, { dryRun: true, preview });
          await showPreview(ctx, preview);
          return out(ctx, 'dry run: nothing changed');
        }
        const result = await moveTenant(map, opts.tenant, opts.to, {
          ...mode,
          onProgress,
          timeoutMs,
          keepSource: opts.keepSource ?? false,
          confirm: async (preview) => {
            if (opts.yes) return true;
            if (!json) await showPreview(ctx, preview);
            const answer = await confirm(
              ctx,
              `move tenant ${preview.tenant} from ${preview.source} to ${preview.target}?`,
            );
            if (answer === undefined)
              throw new ShardctlError('no terminal to confirm on: pass --yes to move without asking', {
                code: 'CONFIRM_NEEDED',
                exitCode: ExitCode.Usage,
              });
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
    if (move.state === 'switched' && move.keepSource)
      out(ctx, `source rows kept on ${move.source}: remove them with \`shardctl moves cleanup ${move.id}\``);
  });
}
