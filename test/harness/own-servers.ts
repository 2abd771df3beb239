import net from 'node:net';
import path from 'node:path';
import { inject } from 'vitest';
import { initServer, serverUrl, startServer, stopServer } from '../../src/dev/embedded-server.js';
import { testTempDir } from './cluster.js';

/** Servers a test file started for itself, and how to stop them. */
export interface OwnServers {
  /** Superuser URLs (database `postgres`), for `createTestCluster({ servers })`. */
  urls: string[];
  /** Data folders, for a test that restarts one (`stopServer` / `startServer`). */
  dirs: string[];
  stop(): Promise<void>;
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

/**
 * Starts `n` servers private to one test file, of the suite's majors. For tests that restart a server
 * or keep transactions prepared: on the suite's shared servers a prepared transaction holds back every
 * other file's replication-slot creation (it waits for all running transactions of the server), and a
 * restart cuts every other file's connections.
 *
 * @example
 * const own = await startOwnServers(2);
 * const cluster = await createTestCluster({ shards: 2, servers: own.urls });
 * await own.stop();
 */
export async function startOwnServers(n: number): Promise<OwnServers> {
  const root = await testTempDir('shardctl-own-');
  const majors = inject('pgMajors');
  const dirs = Array.from({ length: n }, (_, i) => path.join(root, `pg-${i}`));
  const infos = await Promise.all(
    dirs.map(async (dir, i) => {
      const major = majors[i % Math.max(1, majors.length)];
      const info = await initServer(dir, { port: await freePort(), fast: true, ...(major ? { major } : {}) });
      await startServer(dir);
      return info;
    }),
  );
  return {
    urls: infos.map((info) => serverUrl(info, 'postgres')),
    dirs,
    stop: async () => {
      await Promise.all(dirs.map((d) => stopServer(d).catch(() => undefined)));
    },
  };
}
