import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import {
  applyFleetPlan,
  computeFleetPlan,
  ExitCode,
  freezePlacements,
  resumeFleetPlan,
  type ApplyOptions,
  type ApplyReport,
  type FleetPlan,
  type PlanProgress,
  type ShardMap,
  type MoveEvent,
} from '../../index.js';
import { confirm } from '../confirm.js';
import { formatBytes, globals, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';
import { percentOption, sizeOption, usage, wholeNumberOption } from '../options.js';
import { createProgress, moveProgressText, type Progress } from '../progress.js';
import { bar } from '../render.js';
import { modeOptions, type ModeOptions } from './move-mode.js';

/** Fleet options of `shardctl rebalance`. */
export interface FleetOptions extends ModeOptions {
  plan?: boolean;
  apply?: string | boolean;
  drain?: string[];
  freeze?: boolean;
  towardRule?: boolean;
  /** A fraction (commander parsed `10%`). */
  threshold: number;
  maxMoves?: number;
  maxBytes?: number;
  excludeTenant?: string[];
  parallel: number;
  continueOnError?: boolean;
  maxRate?: number;
  resumePlan?: number;
  yes?: boolean;
  /** False with `--no-group`. */
  group?: boolean;
  groupTenants?: number;
  groupBytes?: number;
}

/** Adds the fleet options to the rebalance command. */
export function addFleetOptions(cmd: Command): void {
  cmd
    .option('--plan', 'plan tenant moves that bring every shard within --threshold of the mean (changes nothing)')
    .option('--apply [plan.json]', 'carry out a plan: the one computed now, or a saved one (checked first)')
    .option('--drain <shard...>', 'plan to empty these shards onto the others')
    .option('--freeze', "record every tenant's current shard in the directory (before changing the shard list)")
    .option('--toward-rule', 'move tenants onto the shard the current rule names first')
    .addOption(
      new Option('--threshold <pct>', 'allowed deviation from the mean size, e.g. 10%')
        .argParser(percentOption('--threshold'))
        .default(0.1, '10%'),
    )
    .option('--max-moves <n>', 'at most this many moves', wholeNumberOption('--max-moves'))
    .option('--max-bytes <size>', 'move at most this much data, e.g. 50GB', sizeOption('--max-bytes'))
    .option('--exclude-tenant <id...>', 'never move these tenants')
    .option('--parallel <n>', 'moves at once (on disjoint shards) when applying', wholeNumberOption('--parallel'), 1)
    .option('--continue-on-error', 'keep applying after a failed move')
    .option(
      '--max-rate <size>',
      'throttle each copy to this many bytes per second, e.g. 20MB',
      sizeOption('--max-rate'),
    )
    .option('--resume-plan <id>', 'finish an interrupted plan', wholeNumberOption('--resume-plan'))
    .option(
      '--no-group',
      'move every tenant of a plan alone (by default small tenants between the same shards move together)',
    )
    .option(
      '--group-tenants <n>',
      'at most this many tenants in one group move of a plan (default 25)',
      wholeNumberOption('--group-tenants'),
    )
    .option(
      '--group-bytes <size>',
      'at most this much data in one group move of a plan, e.g. 256MB (the default)',
      sizeOption('--group-bytes'),
    );
}

/** True when the options ask for fleet work rather than a single move. */
export function wantsFleet(o: FleetOptions): boolean {
  return Boolean(o.plan || o.apply || o.drain || o.freeze || o.resumePlan);
}

async function showPlan(ctx: CliContext, plan: FleetPlan): Promise<void> {
  const shards = Object.keys(plan.before);
  const max = Math.max(...shards.map((s) => Math.max(plan.before[s]!, plan.after[s]!)), 1);
  const pct = (v: number) =>
    `${v >= plan.mean ? '+' : ''}${plan.mean > 0 ? (((v - plan.mean) / plan.mean) * 100).toFixed(0) : '0'}%`;
  await outTable(
    ctx,
    ['shard', 'before', '', 'after', ''],
    shards.map((s) => [
      s,
      `${formatBytes(plan.before[s]!)} (${pct(plan.before[s]!)})`,
      bar(plan.before[s]!, max, 20),
      `${formatBytes(plan.after[s]!)} (${pct(plan.after[s]!)})`,
      bar(plan.after[s]!, max, 20),
    ]),
  );
  if (plan.moves.length > 0) {
    await outTable(
      ctx,
      ['#', 'tenant', 'from', 'to', 'size', 'why'],
      plan.moves.map((m, i) => [i + 1, m.tenant, m.from, m.to, formatBytes(m.bytes), m.reason]),
    );
  }
  const lb = plan.lowerBound.surplus;
  out(
    ctx,
    `${plan.moves.length} move(s), ${formatBytes(plan.bytesMoved)} to move; lower bound ${formatBytes(lb)} (surplus above the mean)${lb > 0 ? `: ${(plan.bytesMoved / lb).toFixed(2)}x` : ''}; ${plan.balanced ? `every shard within ${(plan.threshold * 100).toFixed(0)}% of the mean` : 'NOT balanced within the threshold'}${plan.estimated ? ' (sizes are estimates from statistics and sampling)' : ''}`,
  );
  for (const n of plan.notes) out(ctx, `note: ${n}`);
}

/**
 * A plan's progress line: moves done and bytes moved; a rate and an ETA only once a move finished (there
 * is nothing to estimate from before); the running move's own line (its waits included).
 */
function planProgressText(p: PlanProgress, moveText: (e: MoveEvent) => string): string {
  const speed =
    p.bytesMoved > 0
      ? ` (${formatBytes(p.rate)}/s${p.etaSeconds !== undefined && p.done < p.total ? `, about ${p.etaSeconds.toFixed(0)} s left` : ''})`
      : '';
  const move = p.move ? `; ${moveText(p.move)}` : '';
  return `plan ${p.planId}: ${p.done}/${p.total} moves, ${formatBytes(p.bytesMoved)} moved${speed}${move}`;
}

function applyOptionsOf(o: FleetOptions, timeoutMs: number, progress: Progress): ApplyOptions {
  const moveText = moveProgressText();
  return {
    timeoutMs,
    parallel: o.parallel,
    ...(o.continueOnError ? { continueOnError: true } : {}),
    ...(o.maxRate !== undefined ? { maxBytesPerSecond: o.maxRate } : {}),
    move: modeOptions(o),
    group:
      o.group === false
        ? false
        : {
            ...(o.groupTenants !== undefined ? { maxTenants: o.groupTenants } : {}),
            ...(o.groupBytes !== undefined ? { maxBytes: o.groupBytes } : {}),
          },
    onProgress: (p) => progress.update(planProgressText(p, moveText), p),
  };
}

async function freeze(map: ShardMap, timeoutMs: number, json: boolean, ctx: CliContext): Promise<void> {
  const report = await freezePlacements(map, { timeoutMs });
  if (json) return outJson(ctx, { frozen: report });
  const perShard = Object.entries(report.perShard)
    .map(([s, n]) => `${s} ${n}`)
    .join(', ');
  out(ctx, `froze ${report.tenants} tenant(s) in the directory (${perShard}); the shard list can change now`);
}

/** The plan to show or apply: read from `--apply FILE`, or computed now from the options. */
async function planOf(map: ShardMap, o: FleetOptions, timeoutMs: number): Promise<FleetPlan> {
  if (typeof o.apply !== 'string') {
    return computeFleetPlan(map, {
      threshold: o.threshold,
      ...(o.maxMoves !== undefined ? { maxMoves: o.maxMoves } : {}),
      ...(o.maxBytes !== undefined ? { maxBytes: o.maxBytes } : {}),
      ...(o.excludeTenant ? { exclude: o.excludeTenant } : {}),
      ...(o.drain ? { drain: o.drain } : {}),
      ...(o.towardRule ? { towardRule: true } : {}),
      timeoutMs,
    });
  }
  let plan: FleetPlan;
  try {
    plan = JSON.parse(await readFile(o.apply, 'utf8')) as FleetPlan;
  } catch (e) {
    throw usage(`cannot read plan ${o.apply}: ${(e as Error).message}`);
  }
  // `--json --plan` output wraps the plan in { plan }: accept both.
  return (plan as { plan?: FleetPlan }).plan ?? plan;
}

/**
 * Shows the plan and, with --apply, carries it out after confirmation: the report, or undefined when
 * nothing was applied (already printed).
 */
async function planAndApply(
  map: ShardMap,
  o: FleetOptions,
  ctx: CliContext,
  json: boolean,
  applyOptions: ApplyOptions,
): Promise<ApplyReport | undefined> {
  const plan = await planOf(map, o, applyOptions.timeoutMs ?? 5000);
  if (!o.apply) {
    if (json) outJson(ctx, { plan });
    else await showPlan(ctx, plan);
    return undefined;
  }
  if (!json) await showPlan(ctx, plan);
  if (plan.moves.length === 0) {
    if (json) outJson(ctx, { plan, applied: null });
    else out(ctx, 'nothing to move');
    return undefined;
  }
  if (!o.yes) {
    const ok = await confirm(ctx, `apply ${plan.moves.length} move(s)?`);
    if (ok === undefined) throw usage('no terminal to confirm on: pass --yes to apply the plan without asking');
    if (!ok) {
      out(ctx, 'nothing changed');
      return undefined;
    }
  }
  return applyFleetPlan(map, plan, applyOptions);
}

async function showReport(ctx: CliContext, report: ApplyReport): Promise<void> {
  await outTable(
    ctx,
    ['tenant', 'from', 'to', 'size', 'status', 'move', 'error'],
    report.moves.map((m) => [m.tenant, m.from, m.to, formatBytes(m.bytes), m.status, m.moveId, m.error ?? '']),
  );
  const done = report.moves.filter((m) => m.status === 'done').length;
  const resume = report.state === 'done' ? '' : `; finish with \`shardctl rebalance --resume-plan ${report.planId}\``;
  out(
    ctx,
    `plan ${report.planId}: ${report.state}: ${done}/${report.moves.length} moves, ${formatBytes(report.bytesMoved)} in ${report.seconds.toFixed(1)} s${resume}`,
  );
}

/** Runs the fleet part of `shardctl rebalance`: --freeze, --plan, --drain, --apply, --resume-plan. */
export async function runFleet(map: ShardMap, o: FleetOptions, cmd: Command, ctx: CliContext): Promise<void> {
  const json = Boolean(globals(cmd).json);
  const timeoutMs = timeoutOf(cmd);
  if (o.freeze) return freeze(map, timeoutMs, json, ctx);
  const progress = await createProgress(cmd, ctx);
  const applyOptions = applyOptionsOf(o, timeoutMs, progress);
  const report =
    o.resumePlan !== undefined
      ? await resumeFleetPlan(map, o.resumePlan, applyOptions)
      : await planAndApply(map, o, ctx, json, applyOptions);
  if (report === undefined) return;
  progress.done(`plan ${report.planId}: ${report.state}`);
  if (report.state !== 'done') ctx.exitCode = ExitCode.Failed;
  if (json) return outJson(ctx, { applied: report });
  await showReport(ctx, report);
}
