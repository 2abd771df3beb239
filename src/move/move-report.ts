import type { CopyStats } from './copy-tenant.js';
import type { MoveRecord } from './move-journal.js';

/** One write pause of an online move: its length and how it ended. */
export interface PauseAttempt {
  attempt: number;
  ms: number;
  /** `switched`, or why the fence was lifted (the budget ran out). */
  outcome: string;
  /** Replication lag measured just before the pause: a mark's round trip from source to target, seconds. */
  lagSeconds?: number;
}

/** What a move did, from the statistics its journal recorded. */
export interface MoveReport {
  id: number;
  tenant: string;
  source: string;
  target: string;
  state: MoveRecord['state'];
  /** How the changes were captured while copying. */
  capture: 'logical replication' | 'change-log triggers' | 'fenced copy';
  /** Why the move uses that capture, as decided when it was planned (absent for moves planned before it was recorded). */
  captureReason?: string;
  /** Rows and bytes (COPY stream) per table, parents first. */
  tables: { table: string; rows: number; bytes: number; ms: number }[];
  rows: number;
  bytes: number;
  copyMs: number;
  /** Copy throughput, bytes per second (undefined when the copy took no measurable time). */
  bytesPerSecond?: number;
  /** Online: every pause attempt of the last run. */
  pauses: PauseAttempt[];
  /** Online: length of the pause that switched, ms. */
  switchPauseMs?: number;
  /** Replication lag at the pause that switched, seconds. */
  lagAtPauseSeconds?: number;
  /** Rows the cleanup deleted from the source, per table. */
  deleted?: Record<string, number>;
  /** From the plan to the last journal entry, ms. */
  totalMs: number;
}

const CAPTURE_NAMES: Record<MoveRecord['mode'], MoveReport['capture']> = {
  online: 'logical replication',
  trigger: 'change-log triggers',
  fenced: 'fenced copy',
};

interface RecordedStats {
  copy?: CopyStats;
  online?: { pauses?: PauseAttempt[] };
  cleanup?: { tables: Record<string, number> };
}

/**
 * The report of a move, from its journal record (any state: what is not done yet is absent).
 *
 * @example
 * const r = moveReport(move); r.switchPauseMs // 212
 */
export function moveReport(m: MoveRecord): MoveReport {
  const stats = m.stats as RecordedStats;
  const copy = stats.copy;
  const order = m.plan.tables.map((t) => t.table);
  const tables = Object.entries(copy?.tables ?? {})
    .map(([table, t]) => ({ table, rows: t.rows, bytes: t.bytes, ms: t.ms }))
    .sort((a, b) => order.indexOf(a.table) - order.indexOf(b.table));
  const pauses = stats.online?.pauses ?? [];
  const switched = pauses.find((p) => p.outcome === 'switched');
  const copyMs = copy?.ms ?? 0;
  return {
    id: m.id,
    tenant: m.tenant,
    source: m.source,
    target: m.target,
    state: m.state,
    capture: CAPTURE_NAMES[m.mode],
    ...(m.plan.captureReason ? { captureReason: m.plan.captureReason } : {}),
    tables,
    rows: copy?.rows ?? 0,
    bytes: copy?.bytes ?? 0,
    copyMs,
    ...(copy && copyMs > 0 ? { bytesPerSecond: Math.round((copy.bytes / copyMs) * 1000) } : {}),
    pauses,
    ...(switched ? { switchPauseMs: switched.ms } : {}),
    ...(switched?.lagSeconds !== undefined ? { lagAtPauseSeconds: switched.lagSeconds } : {}),
    ...(stats.cleanup ? { deleted: stats.cleanup.tables } : {}),
    totalMs: new Date(m.updatedAt).getTime() - new Date(m.createdAt).getTime(),
  };
}
