import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import { loadShardMap, type ShardMap } from '../../src/index.js';

/** Options of {@link createTestCluster}. */
export interface TestClusterOptions {
  /** Number of shards (databases spread over the suite's servers). Default 3. */
  shards?: number;
  strategy?: 'modulo' | 'hash';
  /** Hash bucket count. Default 64. */
  buckets?: number;
  keyType?: 'bigint' | 'text' | 'uuid';
  keyColumn?: string;
  /** Migrations folder written into the map. Default: a new empty folder. */
  migrations?: string;
  tables?: string[];
  reference?: string[];
  /**
   * The map's `routers.directoryTtl`, e.g. `100ms`: a move's cleanup then waits it plus 0.5 s instead of
   * 2.5 s. Only for files whose routers all use the map's TTL: a router kept stale on purpose (a long
   * `directoryTtlMs`, to meet fences) relies on the default grace. Default: the map's default (2 s).
   */
  directoryTtl?: string;
  /** Extra top-level YAML appended to the map. */
  extraYaml?: string;
  /**
   * Admin URLs of the servers to place shards on (shard i on server i mod n), for example a server of
   * another major a test started. Default: the suite's servers.
   */
  servers?: string[];
  /**
   * Create the shard databases with ICU as their default collation provider (`en-US`): text compares
   * linguistically by default, as on many managed servers, not byte by byte. Default false.
   */
  icu?: boolean;
}

/** The CREATE DATABASE options of a test database: ICU-default (from template0) or the server's own. */
function databaseOptions(icu: boolean | undefined): string {
  return icu ? " TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'" : '';
}

/** A fresh set of shard databases for one test file, with a shard map pointing at them. */
export interface TestCluster {
  map: ShardMap;
  /** Path of the written shards.yaml. */
  mapFile: string;
  /** Temp folder holding the map (and anything the test writes). */
  dir: string;
  /** Shard database URLs, in shard order. */
  urls: string[];
  /** Runs SQL on shard i with a short-lived client. */
  sql<R extends pg.QueryResultRow = Record<string, unknown>>(
    shard: number,
    text: string,
    params?: unknown[],
  ): Promise<R[]>;
  /** Drops the databases. */
  drop(): Promise<void>;
}

function adminUrls(): string[] {
  return inject('pgAdminUrls');
}

/**
 * A new folder under the run's temporary root (removed by the global teardown even when a test fails),
 * readable by the postgres user that runs the servers.
 *
 * @example
 * const dir = await testTempDir('shardctl-e2e-');
 */
export async function testTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(inject('tmpRoot'), prefix));
  await chmod(dir, 0o755);
  return dir;
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

async function admin<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * Creates N new databases (shard i on server i mod servers) and a shard map for them.
 *
 * @example
 * const cluster = await createTestCluster({ shards: 4 });
 * afterAll(() => cluster.drop());
 */
export async function createTestCluster(options: TestClusterOptions = {}): Promise<TestCluster> {
  const servers = options.servers ?? adminUrls();
  const n = options.shards ?? 3;
  const id = randomBytes(4).toString('hex');
  const dir = await testTempDir('shardctl-cluster-');
  const names = Array.from({ length: n }, (_, i) => `t_${id}_${i}`);
  const urls = names.map((db, i) => withDatabase(servers[i % servers.length]!, db));
  await Promise.all(
    names.map((db, i) =>
      admin(servers[i % servers.length]!, (c) => c.query(`CREATE DATABASE "${db}"${databaseOptions(options.icu)}`)),
    ),
  );
  const strategy = options.strategy ?? 'modulo';
  const buckets = options.buckets ?? 64;
  const per = Math.floor(buckets / n);
  const migrations = options.migrations ?? path.join(dir, 'migrations');
  const yaml = [
    'version: 1',
    `shardKey: { column: ${options.keyColumn ?? 'tenant_id'}, type: ${options.keyType ?? 'bigint'} }`,
    'placement:',
    `  strategy: ${strategy}`,
    ...(strategy === 'hash' ? [`  buckets: ${buckets}`] : []),
    'shards:',
    ...urls.flatMap((url, i) => [
      `  - name: shard-${i}`,
      `    url: ${url}`,
      ...(strategy === 'hash' ? [`    buckets: ${i * per}-${i === n - 1 ? buckets - 1 : (i + 1) * per - 1}`] : []),
    ]),
    `migrations: ${JSON.stringify(migrations)}`,
    ...(options.tables ? [`tables: [${options.tables.join(', ')}]`] : []),
    ...(options.reference ? [`reference: [${options.reference.join(', ')}]`] : []),
    ...(options.directoryTtl ? [`routers: { directoryTtl: ${options.directoryTtl} }`] : []),
    options.extraYaml ?? '',
    '',
  ].join('\n');
  const mapFile = path.join(dir, 'shards.yaml');
  await writeFile(mapFile, yaml);
  const map = await loadShardMap(mapFile);
  return {
    map,
    mapFile,
    dir,
    urls,
    sql: async <R extends pg.QueryResultRow>(shard: number, text: string, params?: unknown[]) =>
      admin(urls[shard]!, async (c) => (await c.query<R>(text, params)).rows),
    drop: async () => {
      // A database with a subscription or a logical slot cannot be dropped: a failed online move's leftovers go first.
      await Promise.all(
        urls.map((url) =>
          admin(url, async (c) => {
            for (const r of (
              await c.query<{ n: string }>(
                'SELECT subname AS n FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())',
              )
            ).rows) {
              await c.query(`ALTER SUBSCRIPTION "${r.n}" DISABLE`);
              await c.query(`ALTER SUBSCRIPTION "${r.n}" SET (slot_name = NONE)`);
              await c.query(`DROP SUBSCRIPTION "${r.n}"`);
            }
          }).catch(() => undefined),
        ),
      );
      await Promise.all(
        names.map((db, i) =>
          admin(servers[i % servers.length]!, async (c) => {
            for (let k = 0; k < 50; k++) {
              const r = await c.query<{ n: string; pid: number | null }>(
                'SELECT slot_name AS n, active_pid AS pid FROM pg_replication_slots WHERE database = $1',
                [db],
              );
              if (r.rows.length === 0) break;
              for (const s of r.rows) {
                if (s.pid !== null) await c.query('SELECT pg_terminate_backend($1)', [s.pid]);
                else await c.query('SELECT pg_drop_replication_slot($1)', [s.n]).catch(() => undefined);
              }
              await new Promise((res) => setTimeout(res, 100));
            }
          }).catch(() => undefined),
        ),
      );
      await Promise.all(
        names.map((db, i) =>
          admin(servers[i % servers.length]!, (c) => c.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`)).catch(
            () => undefined,
          ),
        ),
      );
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A database on the first server that is not part of any cluster (for single-database comparisons). */
export async function createScratchDatabase(
  options: { icu?: boolean } = {},
): Promise<{ url: string; drop(): Promise<void> }> {
  const server = adminUrls()[0]!;
  const db = `s_${randomBytes(4).toString('hex')}`;
  await admin(server, (c) => c.query(`CREATE DATABASE "${db}"${databaseOptions(options.icu)}`));
  return {
    url: withDatabase(server, db),
    drop: () => admin(server, (c) => c.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`)).then(() => undefined),
  };
}

/** The suite's server admin URLs (superuser, database postgres). */
export function serverAdminUrls(): string[] {
  return adminUrls();
}

/**
 * Writes a copy of the cluster's map in which shard `index` points at a closed port (1) and returns its
 * path. Only that shard's URL changes, also when every shard is a database of one external server.
 *
 * @example
 * const broken = await mapWithShardDown(cluster, 2); // shard-2: connection refused
 */
export async function mapWithShardDown(cluster: TestCluster, index: number): Promise<string> {
  const url = cluster.urls[index]!;
  const dead = url.replace(`:${new URL(url).port}/`, ':1/');
  if (dead === url) throw new Error(`cannot point ${url} at another port`);
  const file = path.join(cluster.dir, `shard-${index}-down.yaml`);
  await writeFile(file, (await readFile(cluster.mapFile, 'utf8')).replace(url, dead));
  return file;
}

/**
 * Why this run cannot test transactions across shards, or undefined when it can: only in external-server
 * mode, whose server may run with `max_prepared_transactions = 0` (PostgreSQL's default). The suite's own
 * servers always allow them, so the default run never skips.
 *
 * @example
 * describe.skipIf(Boolean(await noPreparedTransactions()))('two-phase commit', () => { ... });
 */
export async function noPreparedTransactions(): Promise<string | undefined> {
  if (!inject('pgExternal')) return undefined;
  for (const url of adminUrls()) {
    const n = await admin(
      url,
      async (c) =>
        (await c.query<{ n: string }>('SELECT current_setting($1) AS n', ['max_prepared_transactions'])).rows[0]!.n,
    );
    if (Number(n) === 0) return `external server ${new URL(url).host} has max_prepared_transactions = 0`;
  }
  return undefined;
}

/**
 * Why this run cannot test online moves, or undefined when it can: only in external-server mode
 * (`SHARDCTL_TEST_PG_URLS`), whose server may run without `wal_level = logical`. The suite's own
 * servers always have it, so the default run never skips.
 *
 * @example
 * describe.skipIf(await noLogicalReplication())('online moves', () => { ... });
 */
export async function noLogicalReplication(): Promise<string | undefined> {
  if (!inject('pgExternal')) return undefined;
  for (const url of adminUrls()) {
    const level = await admin(
      url,
      async (c) => (await c.query<{ wal_level: string }>('SHOW wal_level')).rows[0]!.wal_level,
    );
    if (level !== 'logical') return `external server ${new URL(url).host} has wal_level = ${level}`;
  }
  return undefined;
}
