import { modeOptions, type ModeOptions } from './rebalance.js';
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import {
  applyFleetPlan,
  computeFleetPlan,
  ExitCode,
  freezePlacements,
  resumeFleetPlan,
  ShardctlError,
  type FleetPlan,
  type ShardMap,
} from '../../index.js';
import { confirm } from '../confirm.js';
import { formatBytes, globals, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';
import { createProgress } from '../progress.js';
import { bar } from './shards.js';

/** Fleet options of `shardctl rebalance`. */
export interface FleetOptions extends ModeOptions {
  plan?: boolean;
  apply?: string | boolean;
  drain?: string[];
  freeze?: boolean;
  towardRule?: boolean;
  threshold?: string;
  maxMoves?: string;
  maxBytes?: string;
  excludeTenant?: string[];
  parallel?: string;
  continueOnError?: boolean;
  maxRate?: string;
  resumePlan?: string;
  yes?: boolean;
}

/** Adds the fleet options to the rebalance command. */
export function addFleetOptions(cmd: Command): void {
  cmd
    .option('--plan', 'plan tenant moves that bring every shard within --threshold of the mean (changes nothing)')
    .option('--apply [plan.json]', 'carry out a plan: the one computed now, or a saved one (checked first)')
    .option('--drain <shard...>', 'plan to empty these shards onto the others')
    .option('--freeze', "record every tenant's current shard in the directory (before changing the shard list)")
    .option('--toward-rule', 'move tenants onto the shard the current rule names first')
    .option('--threshold <pct>', 'allowed deviation from the mean size, e.g. 10%', '10%')
    .option('--max-moves <n>', 'at most this many moves')
    .option('--max-bytes <size>', 'move at most this much data, e.g. 50GB')
    .option('--exclude-tenant <id...>', 'never move these tenants')
    .option('--parallel <n>', 'moves at once (on disjoint shards) when applying', '1')
    .option('--continue-on-error', 'keep applying after a failed move')
    .option('--max-rate <size>', 'throttle each copy to this many bytes per second, e.g. 20MB')
    .option('--resume-plan <id>', 'finish an interrupted plan');
}

/** True when the options ask for fleet work rather than a single move. */
export function wantsFleet(o: FleetOptions): boolean {
  return Boolean(o.plan || o.apply || o.drain || o.freeze || o.resumePlan);
}

function usage(message: string): ShardctlError {
  return new ShardctlError(message, { code: 'USAGE', exitCode: ExitCode.Usage });
}

/** Parses sizes such as `50GB`, `20MB`, `512kB`, `1000`. */
export function parseSize(raw: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*$/i.exec(raw);
  if (!m) throw usage(`${flag} must be a size such as 500MB or 20GB, got "${raw}"`);
  const unit = (m[2] ?? 'b').toLowerCase();
  const f: Record<string, number> = {
    b: 1,
    kb: 1e3,
    kib: 1024,
    mb: 1e6,
    mib: 1024 ** 2,
    gb: 1e9,
    gib: 1024 ** 3,
    tb: 1e12,
    tib: 1024 ** 4,
  };
  return Math.round(Number(m[1]) * f[unit]!);
}

function parseThreshold(raw: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%)?\s*$/.exec(raw);
  if (!m) throw usage(`--threshold must be a percentage such as 10%, got "${raw}"`);
  const v = Number(m[1]) / (m[2] || Number(m[1]) > 1 ? 100 : 1);
  if (v <= 0 || v >= 1) throw usage(`--threshold must be between 0% and 100%, got "${raw}"`);
  return v;
}

function int(raw: string | undefined, flag: string): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw usage(`${flag} must be a whole number, got "${raw}"`);
  return Number(raw);
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

/** Runs the fleet part of `shardctl rebalance`: --freeze, --plan, --drain, --apply, --resume-plan. */
export async function runFleet(map: ShardMap, o: FleetOptions, cmd: Command, ctx: CliContext): Promise<void> {
  const json = globals(cmd).json;
  const timeoutMs = timeoutOf(cmd);
  if (o.freeze) {
    const report = await freezePlacements(map, { timeoutMs });
    if (json) return outJson(ctx, { frozen: report });
    out(
      ctx,
      `froze ${report.tenants} tenant(s) in the directory (${Object.entries(report.perShard)
        .map(([s, n]) => `${s} ${n}`)
        .join(', ')}); the shard list can change now`,
    );
    return;
  }
  const progress = await createProgress(cmd, ctx);
  const applyOptions = {
    timeoutMs,
    ...(o.parallel ? { parallel: int(o.parallel, '--parallel')! } : {}),
    ...(o.continueOnError ? { continueOnError: true } : {}),
    ...(o.maxRate ? { maxBytesPerSecond: parseSize(o.maxRate, '--max-rate') } : {}),
    move: modeOptions(o),
    onProgress: (p: {
      planId: number;
      done: number;
      total: number;
      bytesMoved: number;
      rate: number;
      etaSeconds?: number;
      move?: { phase: string; table?: string };
    }) =>
      progress.update(
        `plan ${p.planId}: ${p.done}/${p.total} moves, ${formatBytes(p.bytesMoved)} moved (${formatBytes(p.rate)}/s${p.etaSeconds !== undefined ? `, ETA ${p.etaSeconds.toFixed(0)} s` : ''})${p.move ? `; ${p.move.phase}${p.move.table ? ` ${p.move.table}` : ''}` : ''}`,
        p,
      ),
  };
  let report;
  if (o.resumePlan !== undefined) {
    report = await resumeFleetPlan(map, int(o.resumePlan, '--resume-plan')!, applyOptions);
  } else {
    let plan: FleetPlan;
    if (typeof o.apply === 'string') {
      try {
        plan = JSON.parse(await readFile(o.apply, 'utf8')) as FleetPlan;
      } catch (e) {
        throw usage(`cannot read plan ${o.apply}: ${(e as Error).message}`);
      }
      if ((plan as { plan?: FleetPlan }).plan) plan = (plan as unknown as { plan: FleetPlan }).plan;
    } else {
      plan = await computeFleetPlan(map, {
        threshold: parseThreshold(o.threshold ?? '10%'),
        ...(o.maxMoves ? { maxMoves: int(o.maxMoves, '--max-moves')! } : {}),
        ...(o.maxBytes ? { maxBytes: parseSize(o.maxBytes, '--max-bytes') } : {}),
        ...(o.excludeTenant ? { exclude: o.excludeTenant } : {}),
        ...(o.drain ? { drain: o.drain } : {}),
        ...(o.towardRule ? { towardRule: true } : {}),
        timeoutMs,
      });
    }
    if (!o.apply) {
      if (json) return outJson(ctx, { plan });
      return showPlan(ctx, plan);
    }
    if (!json) await showPlan(ctx, plan);
    if (plan.moves.length === 0) {
      if (json) return outJson(ctx, { plan, applied: null });
      return out(ctx, 'nothing to move');
    }
    if (!o.yes) {
      const ok = await confirm(ctx, `apply ${plan.moves.length} move(s)?`);
      if (ok === undefined) throw usage('no terminal to confirm on: pass --yes to apply the plan without asking');
      if (!ok) return out(ctx, 'nothing changed');
    }
    report = await applyFleetPlan(map, plan, applyOptions);
  }
  progress.done(`plan ${report.planId}: ${report.state}`);
  if (report.state !== 'done') ctx.exitCode = ExitCode.Failed;
  if (json) return outJson(ctx, { applied: report });
  await outTable(
    ctx,
    ['tenant', 'from', 'to', 'size', 'status', 'move', 'error'],
    report.moves.map((m) => [m.tenant, m.from, m.to, formatBytes(m.bytes), m.status, m.moveId, m.error ?? '']),
  );
  out(
    ctx,
    `plan ${report.planId}: ${report.state}: ${report.moves.filter((m) => m.status === 'done').length}/${report.moves.length} moves, ${formatBytes(report.bytesMoved)} in ${report.seconds.toFixed(1)} s${report.state === 'done' ? '' : `; finish with \`shardctl rebalance --resume-plan ${report.planId}\``}`,
  );
}
