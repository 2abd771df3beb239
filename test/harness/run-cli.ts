import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/** What one run of the built `bin/shardctl` printed and returned. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export const BIN = path.resolve(import.meta.dirname, '..', '..', 'bin', 'shardctl');

/**
 * Runs the built CLI (`bin/shardctl`, which needs `npm run build`) as a separate process.
 *
 * @example
 * const r = await runCli(['-c', cluster.mapFile, 'locate', '123']);
 */
export function runCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<CliRun> {
  return spawnCli(args, options).done;
}

/** A running CLI process started by {@link spawnCli}. */
export interface SpawnedCli {
  child: ChildProcess;
  /** What it printed so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves when the process ends (killed after `timeoutMs`, default 60 s). */
  done: Promise<CliRun>;
  /**
   * Resolves once stderr matches `pattern` (`count` times for a global regex), with what stderr held then;
   * rejects if the process ends first or `timeoutMs` (default 20 s) passes, with what it printed.
   */
  waitForStderr(pattern: RegExp, options?: { count?: number; timeoutMs?: number }): Promise<string>;
}

/**
 * Starts the built CLI and returns at once, for tests that act while it runs (a second run against a
 * held lock, SIGINT in the middle, a writer during a move).
 *
 * @example
 * const run = spawnCli(['-c', map, 'migrate']);
 * await run.waitForStderr(/applying 0004_slow\.sql/g, { count: 2 });
 * run.child.kill('SIGINT');
 * expect((await run.done).code).toBe(1);
 */
export function spawnCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; input?: string; timeoutMs?: number } = {},
): SpawnedCli {
  const env: Record<string, string | undefined> = { ...process.env, CI: '1', ...options.env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? process.cwd(),
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  const listeners = new Set<() => void>();
  const notify = () => listeners.forEach((l) => l());
  child.stdout!.on('data', (d: Buffer) => ((out.stdout += d.toString()), notify()));
  child.stderr!.on('data', (d: Buffer) => ((out.stderr += d.toString()), notify()));
  let ended = false;
  const done = new Promise<CliRun>((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      ended = true;
      notify();
      resolve({ code: code ?? (signal ? 128 : 1), stdout: out.stdout, stderr: out.stderr });
    });
  });
  child.stdin!.end(options.input ?? '');
  const waitForStderr = (pattern: RegExp, w: { count?: number; timeoutMs?: number } = {}) =>
    new Promise<string>((resolve, reject) => {
      const matches = () =>
        pattern.global ? (out.stderr.match(pattern) ?? []).length : pattern.test(out.stderr) ? 1 : 0;
      const finish = (error?: Error) => {
        listeners.delete(check);
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(out.stderr);
      };
      const check = () => {
        if (matches() >= (w.count ?? 1)) finish();
        else if (ended)
          finish(new Error(`the CLI ended before stderr matched ${pattern}:\n${out.stderr}${out.stdout}`));
      };
      const timer = setTimeout(
        () => finish(new Error(`stderr did not match ${pattern} within ${w.timeoutMs ?? 20_000} ms:\n${out.stderr}`)),
        w.timeoutMs ?? 20_000,
      );
      listeners.add(check);
      check();
    });
  return {
    child,
    get stdout() {
      return out.stdout;
    },
    get stderr() {
      return out.stderr;
    },
    done,
    waitForStderr,
  };
}
