import { Option, type Command } from 'commander';
import { durationArg, durationOption, usage, wholeNumberOption } from '../options.js';

/** Options choosing how a move runs, shared by single and fleet moves. */
export interface ModeOptions {
  online?: boolean;
  offline?: boolean;
  allowOffline?: boolean;
  /** `logical` or `trigger` (`--capture`). */
  capture?: string;
  /** ms once commander parsed it; text when given by a caller that did not. */
  maxPause?: number | string;
  /** Parallel copy streams (`--copy-streams`). */
  copyStreams?: number;
}

/** What {@link modeOptions} gives the move functions. */
export interface MoveMode {
  mode: 'online' | 'fenced';
  capture?: 'logical' | 'trigger';
  allowOffline: boolean;
  maxPauseMs?: number;
  copyStreams?: number;
}

/**
 * Parses a duration flag: `250ms`, `1s`, `1.5s` or plain milliseconds, at least 1ms (the grammar of
 * the shard map, `config/units.ts`).
 *
 * @example
 * parseDuration('1.5s', '--max-pause') // 1500
 */
export function parseDuration(raw: string, flag: string): number {
  return durationArg(raw, flag);
}

/**
 * Move options from the mode flags (`--online` is the default).
 *
 * @example
 * modeOptions({ offline: true, maxPause: '2s' }) // { mode: 'fenced', allowOffline: false, maxPauseMs: 2000 }
 */
export function modeOptions(o: ModeOptions): MoveMode {
  if (o.offline && o.online) throw usage('--online and --offline exclude each other');
  if (o.capture !== undefined && o.capture !== 'logical' && o.capture !== 'trigger')
    throw usage(`--capture takes logical or trigger, got "${o.capture}"`);
  if (o.capture !== undefined && o.offline)
    throw usage('--capture chooses how an online move captures writes: not with --offline');
  const maxPauseMs = typeof o.maxPause === 'string' ? parseDuration(o.maxPause, '--max-pause') : o.maxPause;
  return {
    mode: o.offline ? 'fenced' : 'online',
    ...(o.capture !== undefined ? { capture: o.capture } : {}),
    allowOffline: o.allowOffline ?? false,
    ...(maxPauseMs !== undefined ? { maxPauseMs } : {}),
    ...(o.copyStreams !== undefined ? { copyStreams: Math.max(1, o.copyStreams) } : {}),
  };
}

/** Adds the mode flags to a command. */
export function addModeOptions(cmd: Command): void {
  cmd
    .option('--online', 'copy while writes continue and pause writes only for the switch (the default)')
    .option('--offline', "fenced move: reject the tenant's writes for the whole copy")
    .option(
      '--capture <kind>',
      'how an online move captures writes during the copy: logical (logical replication) or trigger (change-log triggers, ordinary connections only); default logical where the servers allow it, else trigger',
    )
    .option(
      '--allow-offline',
      'with --capture logical: move fenced where logical replication is impossible, instead of refusing',
    )
    .addOption(
      new Option(
        '--max-pause <duration>',
        'longest write pause of an online move, e.g. 500ms or 2s; a drain that does not fit lifts the fence and retries',
      )
        .argParser(durationOption('--max-pause'))
        .default(1000, '1s'),
    )
    .option(
      '--copy-streams <n>',
      'parallel copy streams, committed together (1: one target transaction); default 4, one where the target cannot take more (the move says why)',
      wholeNumberOption('--copy-streams'),
    );
}
