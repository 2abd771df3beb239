import type { Command } from 'commander';
import {
  abortMove,
  ExitCode,
  moveReport,
  moveTenant,
  planMove,
  resumeMove,
  ShardctlError,
  type MoveEvent,
  type MovePreview,
  type MoveRecord,
  type ShardMap,
  tenantsLabel,
} from '../../index.js';
import { confirm } from '../confirm.js';
import { formatBytes, globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';
import { createProgress, moveProgressText } from '../progress.js';
import { showMoveReport } from './moves.js';
import { usage, wholeNumberArg } from '../options.js';
import { addModeOptions, modeOptions, type ModeOptions, type MoveMode } from './move-mode.js';
import { addFleetOptions, runFleet, wantsFleet, type FleetOptions } from './rebalance-fleet.js';

export { addModeOptions, modeOptions, parseDuration, type ModeOptions } from './move-mode.js';

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
  if (!/^\d+$/.test(raw)) throw usage(`${flag} needs a move id (a number), got "${raw}"`);
  return wholeNumberArg(raw, flag);
}

const CAPTURE_TEXT: Record<MovePreview['capture'], string> = {
  logical: 'logical replication',
  trigger: 'change-log triggers (ordinary connections only)',
  none: 'none (fenced copy)',
};

/** Renders a move preview as a table. */
export async function showPreview(ctx: CliContext, p: MovePreview): Promise<void> {
  out(
    ctx,
    `move ${p.tenants ? `tenants ${p.tenants.join(', ')} (one group)` : `tenant ${p.tenant}`}: ${p.source} -> ${p.target} (${p.rows.toLocaleString('en-US')} rows, ${formatBytes(p.bytes)}, about ${p.estimateSeconds} s), ${p.mode === 'fenced' ? "fenced: the tenant's writes are rejected until the switch" : 'online: writes pause only for the switch'}`,
  );
  out(ctx, `capture: ${CAPTURE_TEXT[p.capture]}, because ${p.captureReason}`);
  if (p.onlineProblems) out(ctx, `not by logical replication because: ${p.onlineProblems.join('; ')}`);
  await outTable(
    ctx,
    ['table (copy order)', 'rows', 'size'],
    p.tables.map((t) => [t.table, t.rows.toLocaleString('en-US'), formatBytes(t.bytes)]),
  );
}

/** The move's last line: its state and, once switched online, how long writes were paused. */
function describe(m: MoveRecord): string {
  const r = moveReport(m);
  const paused =
    r.switchPauseMs !== undefined
      ? `, writes paused ${r.switchPauseMs} ms (attempt ${r.pauses.length}${r.pauses.length > 1 ? `, after ${r.pauses.length - 1} pause(s) over the budget` : ''})`
      : '';
  return `move ${m.id}: ${tenantsLabel(m)} ${m.source} -> ${m.target}: ${m.state}${paused} in ${(r.totalMs / 1000).toFixed(1)} s`;
}

/** What a single move needs besides the map: how to report progress, how long to wait, how to move. */
interface MoveRun {
  map: ShardMap;
  opts: RebalanceOptions;
  ctx: CliContext;
  json: boolean;
  onProgress: (e: MoveEvent) => void;
  timeoutMs: number;
  mode: MoveMode;
}

/** Asks before a move unless --yes; without a terminal to ask on, refuses. */
async function confirmMove(run: MoveRun, preview: MovePreview): Promise<boolean> {
  if (run.opts.yes) return true;
  if (!run.json) await showPreview(run.ctx, preview);
  const answer = await confirm(
    run.ctx,
    `move ${preview.tenants ? `tenants ${preview.tenants.join(', ')}` : `tenant ${preview.tenant}`} from ${preview.source} to ${preview.target}?`,
  );
  if (answer === undefined)
    throw new ShardctlError('no terminal to confirm on: pass --yes to move without asking', {
      code: 'CONFIRM_NEEDED',
      exitCode: ExitCode.Usage,
    });
  return answer;
}

/**
 * `--tenant 5` is one tenant; `--tenant 5,8,13` a group moved together, for every key type. A text key
 * may hold a comma itself: written `\,` it stays in the id (and `\\` is a backslash).
 *
 * @example
 * tenantsArg('acme,globex', 'text') // ['acme', 'globex']
 * tenantsArg('a\\,b', 'text') // 'a,b'
 * tenantsArg('7', 'bigint') // '7'
 */
export function tenantsArg(raw: string, keyType: string): string | string[] {
  const list: string[] = [''];
  const text = keyType === 'text';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (text && ch === '\\' && (raw[i + 1] === ',' || raw[i + 1] === '\\')) list[list.length - 1] += raw[++i]!;
    else if (ch === ',') list.push('');
    else list[list.length - 1] += ch;
  }
  const ids = text ? list : list.map((t) => t.trim());
  if (ids.length === 1) return ids[0]!;
  if (ids.some((t) => t.trim() === '')) throw usage(`--tenant takes one id or a list like 5,8,13, got "${raw}"`);
  return ids;
}

/** --tenant ID --to SHARD: the move's record, or undefined after a dry run (which printed the preview). */
async function moveOne(run: MoveRun): Promise<MoveRecord | undefined> {
  const { map, opts, ctx, mode, timeoutMs } = run;
  if (opts.tenant === undefined || opts.to === undefined) {
    throw usage(
      'rebalance needs --tenant ID --to SHARD (or --resume ID, --abort ID, --plan, --apply, --drain SHARD, --freeze)',
    );
  }
  if (opts.dryRun) {
    const preview = await planMove(map, tenantsArg(opts.tenant, map.shardKey.type), opts.to, {
      timeoutMs,
      mode: mode.mode,
      allowOffline: mode.allowOffline,
      ...(mode.capture ? { capture: mode.capture } : {}),
    });
    if (run.json) outJson(ctx, { dryRun: true, preview });
    else {
      await showPreview(ctx, preview);
      out(ctx, 'dry run: nothing changed');
    }
    return undefined;
  }
  const result = await moveTenant(map, tenantsArg(opts.tenant, map.shardKey.type), opts.to, {
    ...mode,
    onProgress: run.onProgress,
    timeoutMs,
    keepSource: opts.keepSource ?? false,
    confirm: (preview) => confirmMove(run, preview),
  });
  return result.move;
}

/** --resume ID, --abort ID, or a new move. */
async function runMove(run: MoveRun): Promise<MoveRecord | undefined> {
  const { map, opts, onProgress, timeoutMs, mode } = run;
  if (opts.resume !== undefined) {
    const maxPause = mode.maxPauseMs ? { maxPauseMs: mode.maxPauseMs } : {};
    const streams = mode.copyStreams ? { copyStreams: mode.copyStreams } : {};
    return (await resumeMove(map, moveId(opts.resume, '--resume'), { onProgress, timeoutMs, ...maxPause, ...streams }))
      .move;
  }
  if (opts.abort !== undefined) {
    return (await abortMove(map, moveId(opts.abort, '--abort'), { onProgress, timeoutMs })).move;
  }
  return moveOne(run);
}

async function rebalanceAction(opts: RebalanceOptions, command: Command, ctx: CliContext): Promise<void> {
  const map = await mapOf(command, ctx);
  const json = Boolean(globals(command).json);
  if (wantsFleet(opts)) return runFleet(map, opts, command, ctx);
  const progress = await createProgress(command, ctx);
  const text = moveProgressText();
  const run: MoveRun = {
    map,
    opts,
    ctx,
    json,
    onProgress: (e) => progress.update(text(e), e),
    timeoutMs: timeoutOf(command),
    mode: modeOptions(opts),
  };
  let move: MoveRecord | undefined;
  try {
    move = await runMove(run);
  } catch (e) {
    progress.fail();
    throw e;
  }
  if (move === undefined) return;
  progress.done(describe(move));
  if (json) return outJson(ctx, { move, report: moveReport(move) });
  out(ctx, describe(move));
  if (move.state === 'done' || move.state === 'switched') await showMoveReport(ctx, moveReport(move));
  if (move.state === 'switched' && move.keepSource)
    out(ctx, `source rows kept on ${move.source}: remove them with \`shardctl moves cleanup ${move.id}\``);
}

/** `shardctl rebalance`: move one tenant (fenced, verified, resumable), or plan and apply fleet moves. */
export function registerRebalance(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('rebalance')
    .description(
      'move a tenant to another shard (--tenant ID --to SHARD), resume or abort a move, or plan and apply fleet moves',
    )
    .option('--tenant <id>', 'tenant to move; several (5,8,13) move together as one group')
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
  cmd.action((opts: RebalanceOptions, command: Command) => rebalanceAction(opts, command, ctx));
}
