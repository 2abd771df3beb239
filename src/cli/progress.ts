import type { Command } from 'commander';
import type { MoveEvent, MoveWait } from '../index.js';
import { formatBytes, globals, progressEnabled, type CliContext } from './context.js';

/** A sink for progress lines: a live spinner on a TTY, timestamped lines otherwise, JSON events with --json. */
export interface Progress {
  update(text: string, event?: unknown): void;
  done(text?: string): void;
  fail(text?: string): void;
}

/**
 * Picks how progress is shown: ora on a TTY (loaded on demand), plain timestamped lines on stderr in CI
 * or when piped, and one JSON event per line on stderr with --json.
 */
export async function createProgress(cmd: Command, ctx: CliContext): Promise<Progress> {
  if (globals(cmd).json) {
    return {
      update: (_t, event) =>
        event !== undefined &&
        ctx.stderr.write(JSON.stringify({ at: new Date().toISOString(), ...(event as object) }) + '\n'),
      done: () => undefined,
      fail: () => undefined,
    };
  }
  if (progressEnabled(cmd, ctx)) {
    const { default: ora } = await import('ora');
    const spinner = ora({ stream: ctx.stderr as NodeJS.WriteStream }).start();
    return {
      update: (t) => {
        spinner.text = t;
      },
      done: (t) => (t ? spinner.succeed(t) : spinner.stop()),
      fail: (t) => (t ? spinner.fail(t) : spinner.stop()),
    };
  }
  let last = '';
  let lastAt = 0;
  return {
    update: (t) => {
      // Plain output is for logs: at most a line a second for the same kind of message.
      const kind = t.replace(/[\d,.]+/g, '#');
      if (kind === last && Date.now() - lastAt < 1000) return;
      last = kind;
      lastAt = Date.now();
      ctx.stderr.write(`${new Date().toISOString()} ${t}\n`);
    },
    done: (t) => t && ctx.stderr.write(`${new Date().toISOString()} ${t}\n`),
    fail: (t) => t && ctx.stderr.write(`${new Date().toISOString()} ${t}\n`),
  };
}

/** Seconds or milliseconds, whichever reads better. */
function duration(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

/** A long wait: what the move does, for how long, why, and each session with how to end it. */
function waitText(e: MoveEvent, w: MoveWait): string {
  const who = w.sessions
    .map(
      (s) =>
        `pid ${s.pid} (database ${s.database ?? '?'}${s.application ? `, application ${s.application}` : ''}, ${s.state ?? 'unknown state'}, transaction open ${s.transactionSeconds.toFixed(1)} s)`,
    )
    .join(', ');
  const end = w.sessions.map((s) => s.terminate).join('; ');
  return `move ${e.moveId}: ${w.action}: waiting ${duration(w.elapsedMs)} for ${w.sessions.length} session(s): ${who}; ${w.cause}; commit or roll them back, or end them with ${end}`;
}

/** Copy progress: throughput after 2 s of copying, an ETA only once 5% of the planned bytes are in. */
function copyText(e: MoveEvent, copyStarted: number): string {
  const s = (performance.now() - copyStarted) / 1000;
  const bytes = e.bytes ?? 0;
  const rate = s >= 2 ? bytes / s : undefined;
  const eta =
    rate && e.totalBytes && bytes >= e.totalBytes * 0.05 ? Math.max(0, (e.totalBytes - bytes) / rate) : undefined;
  const speed =
    rate !== undefined ? ` (${formatBytes(rate)}/s${eta !== undefined ? `, about ${eta.toFixed(0)} s left` : ''})` : '';
  const rows = e.rows !== undefined ? `${e.rows.toLocaleString('en-US')} rows, ` : '';
  return `move ${e.moveId}: ${e.phase === 'syncing' ? 'copying (writes continue)' : 'copying'} ${e.table}: ${rows}${formatBytes(bytes)}${speed}`;
}

/** Catch-up: the mark's wait is what is measured; the slot's unconfirmed WAL is only an upper bound. */
function lagText(e: MoveEvent): string {
  if (e.markWaitMs === undefined) return `move ${e.moveId}: replicating: ${e.message ?? ''}`;
  const slot = e.lagBytes
    ? `; the slot's confirmed position is ${formatBytes(e.lagBytes)} behind the server's WAL (all databases, confirmed in batches)`
    : '';
  return `move ${e.moveId}: replicating: catching up, waiting ${duration(e.markWaitMs)} so far for a mark to reach the target${slot}`;
}

/**
 * The progress line of a move event. Keeps, per move, when its copy started, so that throughput is
 * measured over the copy and not over the setup before it.
 *
 * @example
 * const text = moveProgressText(); progress.update(text(event), event);
 */
export function moveProgressText(): (e: MoveEvent) => string {
  const copyStarted = new Map<number, number>();
  return (e) => {
    if (e.wait) return waitText(e, e.wait);
    if (e.phase === 'replicating' && e.lagBytes !== undefined && e.markWaitMs !== undefined) return lagText(e);
    if ((e.phase === 'copying' || e.phase === 'syncing') && e.bytes !== undefined) {
      if (!copyStarted.has(e.moveId)) copyStarted.set(e.moveId, performance.now());
      return copyText(e, copyStarted.get(e.moveId)!);
    }
    if (e.phase === 'cleanup' && e.deletedRows !== undefined)
      return `move ${e.moveId}: cleanup ${e.table}: ${e.deletedRows.toLocaleString('en-US')} rows deleted${e.message === 'table done' ? '' : ' so far'}`;
    return `move ${e.moveId}: ${e.phase}${e.table ? ` ${e.table}` : ''}${e.rows !== undefined ? ` ${e.rows.toLocaleString('en-US')} rows` : ''}${e.message ? `: ${e.message}` : ''}`;
  };
}
