import type { Command } from 'commander';
import { loadShardMap, redact, defaultShardMapPath, type ShardMap } from '../index.js';
import { cutCell, fitColumnWidths, longestWord, naturalWidth } from './table-fit.js';

/** Global options, accepted before or after the command name. */
export interface GlobalOptions {
  config?: string;
  json?: boolean;
  progress?: boolean;
  /** ms, parsed by the option's parser. */
  timeout?: number;
  verbose?: boolean;
}

/** What every command action gets: output streams, global options and helpers to render. */
export interface CliContext {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: Record<string, string | undefined>;
  /** Exit code the command sets; main returns it. */
  exitCode: number;
}

/** Resolved global options of a command. */
export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

/** Loads the map named by `-c`, `$SHARDCTL_CONFIG` or `./shards.yaml`. */
export async function mapOf(cmd: Command, ctx: CliContext): Promise<ShardMap> {
  return loadShardMap(globals(cmd).config ?? defaultShardMapPath(ctx.env), { env: ctx.env });
}

/** `--timeout` in ms (commander parsed it, see main.ts), or the default. */
export function timeoutOf(cmd: Command, fallback = 5000): number {
  return globals(cmd).timeout ?? fallback;
}

/** True when live progress (spinners) may be drawn: a TTY, not CI, not --json, not --no-progress. */
export function progressEnabled(cmd: Command, ctx: CliContext): boolean {
  const g = globals(cmd);
  return Boolean(ctx.stderr.isTTY) && g.progress !== false && !g.json && !ctx.env.CI;
}

/** Writes one line to stdout (redacted). */
export function out(ctx: CliContext, text = ''): void {
  ctx.stdout.write(redact(text) + '\n');
}

/** Writes one line to stderr (redacted). */
export function err(ctx: CliContext, text = ''): void {
  ctx.stderr.write(redact(text) + '\n');
}

/** Writes one JSON document to stdout; bigint values become strings so that nothing is rounded. */
export function outJson(ctx: CliContext, value: unknown): void {
  ctx.stdout.write(
    redact(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)) + '\n',
  );
}

/**
 * True when stdout is laid out for a person at a terminal: a TTY, or `SHARDCTL_TTY=1` (tests and
 * pagers such as `less -R` that are not TTYs themselves); `SHARDCTL_TTY=0` forces full text.
 */
export function stdoutIsTerminal(ctx: CliContext): boolean {
  if (ctx.env.SHARDCTL_TTY === '1') return true;
  if (ctx.env.SHARDCTL_TTY === '0') return false;
  return Boolean(ctx.stdout.isTTY);
}

/** Width of the terminal: `$COLUMNS` when set, else the TTY's own, else 80. */
export function terminalColumns(ctx: CliContext): number {
  const fromEnv = Number(ctx.env.COLUMNS);
  if (Number.isInteger(fromEnv) && fromEnv > 0) return fromEnv;
  return ctx.stdout.columns ?? 80;
}

/**
 * Renders rows as a table for people (cli-table3, loaded on demand so that commands printing JSON
 * do not pay for it). On a terminal, long cells are wrapped (and cut after a few lines) so that the
 * table fits its width; otherwise, and in `--json`, every cell is printed in full.
 *
 * @example
 * await outTable(ctx, ['shard', 'url'], [['shard-0', 'postgres://app:***@db0/app']]);
 */
export async function outTable(
  ctx: CliContext,
  head: string[],
  rows: (string | number | boolean | null | undefined)[][],
): Promise<void> {
  const { default: Table } = await import('cli-table3');
  const text = rows.map((r) => r.map((c) => (c === null || c === undefined ? '' : String(c))));
  const column = (i: number) => [head[i]!, ...text.map((r) => r[i] ?? '')];
  const widths = stdoutIsTerminal(ctx)
    ? fitColumnWidths(
        head.map((_, i) => Math.max(...column(i).map(naturalWidth))),
        terminalColumns(ctx),
        head.map((_, i) => longestWord(column(i))),
      )
    : undefined;
  const table = new Table({
    head,
    style: { head: ctx.stdout.isTTY ? ['cyan'] : [], border: ctx.stdout.isTTY ? ['grey'] : [] },
    ...(widths ? { colWidths: widths, wordWrap: true, wrapOnWordBoundary: true } : {}),
  });
  for (const r of text) table.push(widths ? r.map((c, i) => cutCell(c, widths[i]!)) : r);
  out(ctx, table.toString());
}

/** Formats a byte count for people: 1.5 MB. */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}
