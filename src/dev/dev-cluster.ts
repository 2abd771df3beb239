import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadPg } from '../db/shard-pools.js';
import { quoteIdent } from '../db/sql.js';
import { ExitCode, ShardctlError } from '../errors.js';
import {
  initServer,
  readServerInfo,
  serverStatus,
  serverUrl,
  startServer,
  stopServer,
  type ServerInfo,
} from './embedded-server.js';

/** Options of {@link devUp}. */
export interface DevUpOptions {
  /** Number of shards (one server each). Default 3. */
  shards?: number;
  /** Folder holding the servers. Default `.shardctl/dev`. */
  dir?: string;
  /** Port of the first server; the others follow. Default 54320. */
  port?: number;
  /** Map written for the servers. Default `shards.dev.yaml`. */
  configFile?: string;
  /** Database created on each server. Default `app`. */
  database?: string;
  /** Placement strategy of the written map. Default `modulo`. */
  strategy?: 'modulo' | 'hash';
  /** Called before each slow step. */
  onProgress?: (message: string) => void;
}

/** One dev server as reported by `dev up` and `dev status`. */
export interface DevServer {
  name: string;
  dir: string;
  port: number;
  running: boolean;
  pid?: number;
  /** What `dev up` did: `created`, `started` or `already running`. */
  action?: 'created' | 'started' | 'already running';
}

/** Result of {@link devUp}. */
export interface DevUpResult {
  configFile: string;
  servers: DevServer[];
}

/**
 * Starts N local PostgreSQL servers (creating them the first time), creates the shard database on
 * each, and writes a shard map for them. Idempotent: running servers are left alone.
 *
 * @example
 * const { configFile } = await devUp({ shards: 3 }); // shards.dev.yaml
 */
export async function devUp(options: DevUpOptions = {}): Promise<DevUpResult> {
  const n = options.shards ?? 3;
  if (!Number.isInteger(n) || n < 1 || n > 32)
    throw new ShardctlError(`--shards must be 1 to 32, got ${n}`, { code: 'USAGE', exitCode: ExitCode.Usage });
  const dir = path.resolve(options.dir ?? '.shardctl/dev');
  const basePort = options.port ?? 54320;
  const database = options.database ?? 'app';
  const configFile = path.resolve(options.configFile ?? 'shards.dev.yaml');
  const servers: DevServer[] = [];
  const infos: ServerInfo[] = [];
  for (let i = 0; i < n; i++) {
    const name = `shard-${i}`;
    const sdir = path.join(dir, name);
    const existed = existsSync(path.join(sdir, 'data', 'PG_VERSION'));
    if (!existed) options.onProgress?.(`creating ${name}`);
    const info = await initServer(sdir, { port: basePort + i });
    const was = await serverStatus(sdir);
    if (!was.running) {
      options.onProgress?.(`starting ${name} on port ${info.port}`);
      await startServer(sdir);
    }
    await ensureDatabase(info, database);
    const now = await serverStatus(sdir);
    servers.push({
      name,
      dir: sdir,
      port: info.port,
      running: now.running,
      ...(now.pid !== undefined ? { pid: now.pid } : {}),
      action: !existed ? 'created' : was.running ? 'already running' : 'started',
    });
    infos.push(info);
  }
  await writeFile(configFile, devShardMap(infos, database, options.strategy ?? 'modulo'));
  return { configFile, servers };
}

/**
 * Stops every dev server under the folder. Leaves their data in place (remove the folder to start over).
 *
 * @example
 * await devDown(); // every server of .shardctl/dev stopped
 */
export async function devDown(options: { dir?: string } = {}): Promise<DevServer[]> {
  const servers = await devStatus(options);
  for (const s of servers) if (s.running) await stopServer(s.dir);
  return Promise.all(servers.map(async (s) => ({ ...s, running: (await serverStatus(s.dir)).running })));
}

/** Lists the dev servers under the folder with whether each runs. */
export async function devStatus(options: { dir?: string } = {}): Promise<DevServer[]> {
  const dir = path.resolve(options.dir ?? '.shardctl/dev');
  if (!existsSync(dir)) return [];
  const names = (await readdir(dir))
    .filter((d) => /^shard-\d+$/.test(d))
    .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)));
  const out: DevServer[] = [];
  for (const name of names) {
    const sdir = path.join(dir, name);
    if (!existsSync(path.join(sdir, 'data', 'PG_VERSION'))) continue;
    const info = await readServerInfo(sdir);
    const st = await serverStatus(sdir);
    out.push({
      name,
      dir: sdir,
      port: info.port,
      running: st.running,
      ...(st.pid !== undefined ? { pid: st.pid } : {}),
    });
  }
  return out;
}

/** Creates a database on a server unless it exists. */
export async function ensureDatabase(info: ServerInfo, database: string): Promise<void> {
  const pg = await loadPg();
  // A plain client, not a shard pool: CREATE DATABASE runs on the server's maintenance database.
  const client = new pg.Client({ connectionString: serverUrl(info), connectionTimeoutMillis: 10_000 });
  try {
    // Inside the try: a connect that fails half-way still has its socket closed by end().
    await client.connect();
    const r = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (r.rowCount === 0) {
      await client.query(`CREATE DATABASE ${quoteIdent(database)}`).catch((e: { code?: string }) => {
        if (e.code !== '42P04') throw e; // created meanwhile by another process
      });
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

function devShardMap(infos: ServerInfo[], database: string, strategy: 'modulo' | 'hash'): string {
  const buckets = 4096;
  const per = Math.floor(buckets / infos.length);
  const lines = [
    '# Written by `shardctl dev up`: local embedded PostgreSQL servers for development.',
    'version: 1',
    'shardKey: { column: tenant_id, type: bigint }',
    'placement:',
    `  strategy: ${strategy}`,
    ...(strategy === 'hash' ? [`  buckets: ${buckets}`] : []),
    'shards:',
    ...infos.flatMap((info, i) => [
      `  - name: shard-${i}`,
      `    url: ${serverUrl(info, database)}`,
      ...(strategy === 'hash'
        ? [`    buckets: ${i * per}-${i === infos.length - 1 ? buckets - 1 : (i + 1) * per - 1}`]
        : []),
    ]),
    `migrations: ${JSON.stringify(path.resolve('migrations'))}`,
    'reference: [plans]',
  ];
  // Every line ends with a newline, the last one too (POSIX text files; editors and `cat` expect it).
  return lines.map((l) => `${l}\n`).join('');
}
