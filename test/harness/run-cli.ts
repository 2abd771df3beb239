import { spawn } from 'node:child_process';
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
  return new Promise((resolve, reject) => {
    const env: Record<string, string | undefined> = { ...process.env, CI: '1', ...options.env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? process.cwd(),
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}
