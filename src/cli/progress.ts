import type { Command } from 'commander';
import { globals, progressEnabled, type CliContext } from './context.js';

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
