import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const DIST = pathToFileURL(path.resolve(import.meta.dirname, '..', '..', 'dist', 'index.js')).href;

/**
 * A coordinator process for crash tests: `workers` loops of transfers through the built library's
 * router.transaction (needs `npm run build`). Transfer `txno` moves an amount between two tenants,
 * updating both accounts and logging `(tenant, txno, delta)` next to each, in tenant order (so two
 * transfers never wait on each other across shards). Prints `ack <txno>` once a transfer resolved.
 * After `armAfter` acknowledged transfers it sets SHARDCTL_TEST_CRASH_AT to `point`, so the next
 * transfer to reach that point kills the process.
 */
const SCRIPT = `
import { createRouter } from ${JSON.stringify(DIST)};
const o = JSON.parse(process.argv[2]);
const router = await createRouter(o.mapFile, { pool: { maxPerShard: o.workers + 2 } });
let next = o.start;
let acked = 0;
let seed = o.start * 7919 + 13;
const random = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
async function worker() {
  while (next < o.start + o.count) {
    const txno = next++;
    if (o.point && acked >= o.armAfter) process.env.SHARDCTL_TEST_CRASH_AT = o.point;
    const a = o.tenants[random(o.tenants.length)];
    let b = o.tenants[random(o.tenants.length)];
    if (b === a) b = o.tenants[(o.tenants.indexOf(a) + 1) % o.tenants.length];
    const amount = 1 + (txno % 7);
    const parts = [[a, -amount], [b, amount]].sort((x, y) => x[0] - y[0]);
    try {
      await router.transaction(async (tx) => {
        for (const [t, d] of parts) {
          await tx.db(t).updateTable('accounts').set((eb) => ({ balance: eb('balance', '+', d) })).where('tenant_id', '=', t).execute();
          await tx.db(t).insertInto('transfer_log').values({ tenant_id: t, txno, delta: d }).execute();
        }
      });
      acked++;
      process.stdout.write('ack ' + txno + '\\n');
    } catch (e) {
      process.stdout.write('fail ' + txno + ' ' + (e.code ?? '') + ' ' + e.message + '\\n');
    }
  }
}
await Promise.all(Array.from({ length: o.workers }, worker));
await router.close();
`;

/** What a coordinator process did before it ended (or was killed). */
export interface ChildRun {
  signal: NodeJS.Signals | null;
  code: number | null;
  acked: number[];
  failed: string[];
  stderr: string;
}

/** Options of {@link runTransfers}. */
export interface TransferRun {
  mapFile: string;
  dir: string;
  tenants: number[];
  start: number;
  count: number;
  workers: number;
  point?: string;
  armAfter?: number;
  /** SIGKILL the process from outside once this many transfers were acknowledged. */
  killAfter?: number;
}

/** Runs a coordinator process to its end (or its crash). */
export async function runTransfers(o: TransferRun): Promise<ChildRun> {
  const file = path.join(o.dir, 'tx-child.mjs');
  await writeFile(file, SCRIPT);
  const child = spawn(process.execPath, [file, JSON.stringify({ ...o, armAfter: o.armAfter ?? 0 })], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SHARDCTL_TEST_CRASH_AT: '' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (o.killAfter !== undefined && (stdout.match(/^ack /gm)?.length ?? 0) >= o.killAfter) child.kill('SIGKILL');
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('close', (c, s) => resolve([c, s])),
  );
  const lines = stdout.split('\n');
  return {
    code,
    signal,
    acked: lines.filter((l) => l.startsWith('ack ')).map((l) => Number(l.slice(4))),
    failed: lines.filter((l) => l.startsWith('fail ')),
    stderr,
  };
}
