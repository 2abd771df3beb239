import { redact } from './redact.js';

/**
 * Process exit codes of `shardctl`, one table for every command (documented in the README).
 *
 * @example
 * if (error instanceof ShardctlError) process.exitCode = error.exitCode;
 */
export const ExitCode = {
  /** Everything asked for was done. */
  Ok: 0,
  /** The operation ran and failed (a shard was unreachable, a check found problems). */
  Failed: 1,
  /** Bad command line or bad shard map: nothing was done. */
  Usage: 2,
  /** `migrate`: drift (an applied file changed, a ledger entry lost its file, out-of-order history). */
  Drift: 3,
  /** `migrate status --check`: migrations are pending. */
  Pending: 4,
  /** A shard could not be reached (`migrate status --check`), or `query --allow-partial` answered without some shards. */
  Partial: 5,
  /** Another process holds the lock this command needs. */
  Locked: 6,
  /** A query construct that cannot be answered exactly across shards was refused. */
  Refused: 7,
} as const;

/** One of the values of {@link ExitCode}. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** PostgreSQL's own description of an error, kept whole so that operators see what the server said. */
export interface PgErrorFields {
  /** SQLSTATE, for example `42P01`. */
  code?: string;
  detail?: string;
  hint?: string;
  /** 1-based character position in the SQL text sent, as PostgreSQL reports it. */
  position?: number;
  where?: string;
  schema?: string;
  table?: string;
  column?: string;
  constraint?: string;
}

/** Options of {@link ShardctlError}. */
export interface ShardctlErrorOptions {
  /** Machine-readable code, for example `CONFIG_INVALID`. Default `FAILED`. */
  code?: string;
  /** Exit code of the CLI. Default {@link ExitCode.Failed}. */
  exitCode?: ExitCodeValue;
  /** Shard the error happened on, when there is one. */
  shard?: string;
  /** How to fix it, shown under the message. */
  hint?: string;
  /** PostgreSQL's fields, when the error came from the server. */
  pg?: PgErrorFields;
  /** Extra structured data for `--json` output. */
  details?: unknown;
  cause?: unknown;
}

/**
 * The one error type shardctl's core throws for user-facing failures. The CLI prints its message
 * (never a stack trace) and exits with `exitCode`.
 *
 * @example
 * throw new ShardctlError('unknown shard "shard-9"', { code: 'UNKNOWN_SHARD', exitCode: ExitCode.Usage });
 */
export class ShardctlError extends Error {
  readonly code: string;
  readonly exitCode: ExitCodeValue;
  readonly shard?: string;
  readonly hint?: string;
  readonly pg?: PgErrorFields;
  readonly details?: unknown;

  constructor(message: string, options: ShardctlErrorOptions = {}) {
    super(redact(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ShardctlError';
    this.code = options.code ?? 'FAILED';
    this.exitCode = options.exitCode ?? ExitCode.Failed;
    if (options.shard !== undefined) this.shard = options.shard;
    if (options.hint !== undefined) this.hint = redact(options.hint);
    if (options.pg !== undefined) {
      const pg = { ...options.pg };
      if (pg.detail) pg.detail = redact(pg.detail);
      if (pg.hint) pg.hint = redact(pg.hint);
      this.pg = pg;
    }
    if (options.details !== undefined) this.details = options.details;
  }

  /** A JSON-safe form for `--json` output. */
  toJSON(): Record<string, unknown> {
    return {
      error: this.code,
      message: this.message,
      ...(this.shard !== undefined ? { shard: this.shard } : {}),
      ...(this.hint !== undefined ? { hint: this.hint } : {}),
      ...(this.pg !== undefined ? { pg: this.pg } : {}),
      ...(this.details !== undefined ? { details: this.details } : {}),
    };
  }
}

/** Raised by the shard-map loader and validator; carries every problem found. */
export class ConfigError extends ShardctlError {
  readonly problems: ConfigProblem[];

  constructor(file: string, problems: ConfigProblem[]) {
    const lines = problems.map((p) => `  ${formatProblem(file, p)}`);
    super(
      `invalid shard map ${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n${lines.join('\n')}`,
      {
        code: 'CONFIG_INVALID',
        exitCode: ExitCode.Usage,
        details: problems.map((p) => ({ ...p, file })),
      },
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** One problem in a shard map, located in the file. */
export interface ConfigProblem {
  /** 1-based line, 0 when the problem has no place in the file (a missing file). */
  line: number;
  /** 1-based column. */
  column: number;
  /** Key path, for example `shards[1].name`. Empty for the document itself. */
  path: string;
  message: string;
}

function formatProblem(file: string, p: ConfigProblem): string {
  const where = p.line > 0 ? `${file}:${p.line}:${p.column}` : file;
  return `${where}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

interface PgLikeError {
  message?: string;
  code?: string;
  detail?: string;
  hint?: string;
  position?: string | number;
  where?: string;
  schema?: string;
  table?: string;
  column?: string;
  constraint?: string;
  severity?: string;
}

/** Node's network error codes, turned into words an operator recognises. */
const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ETIMEDOUT: 'connection timed out',
  ENOTFOUND: 'host not found',
  EHOSTUNREACH: 'host unreachable',
  ECONNRESET: 'connection reset',
  EAI_AGAIN: 'host name lookup failed',
};

/**
 * Wraps anything thrown while talking to a shard into a {@link ShardctlError} that names the shard,
 * keeps PostgreSQL's code, detail, hint and position, and never contains a password.
 *
 * @example
 * try { await client.query(sql) } catch (e) { throw fromDriverError(e, { shard: 'shard-1' }) }
 */
export function fromDriverError(error: unknown, context: { shard?: string; action?: string } = {}): ShardctlError {
  if (error instanceof ShardctlError) return error;
  const e = (error ?? {}) as PgLikeError & { errno?: string; syscall?: string; address?: string; port?: number };
  const prefix = `${context.shard ? `shard ${context.shard}: ` : ''}${context.action ? `${context.action}: ` : ''}`;
  const sqlState = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  if (sqlState && e.severity !== undefined) {
    const pg: PgErrorFields = { code: sqlState };
    for (const k of ['detail', 'hint', 'where', 'schema', 'table', 'column', 'constraint'] as const) {
      if (typeof e[k] === 'string' && e[k]) pg[k] = e[k];
    }
    if (e.position !== undefined && e.position !== '') pg.position = Number(e.position);
    return new ShardctlError(`${prefix}${e.message ?? 'PostgreSQL error'} (SQLSTATE ${sqlState})`, {
      code: 'PG_ERROR',
      ...(context.shard ? { shard: context.shard } : {}),
      pg,
      ...(pg.hint ? { hint: pg.hint } : {}),
      cause: error,
    });
  }
  const network = typeof e.code === 'string' ? NETWORK_CODES[e.code] : undefined;
  if (network) {
    const where = e.address ? ` (${e.address}${e.port ? `:${e.port}` : ''})` : '';
    return new ShardctlError(`${prefix}${network}${where}`, {
      code: 'UNREACHABLE',
      ...(context.shard ? { shard: context.shard } : {}),
      hint: 'check that the server is running and that the URL in the shard map is right',
      cause: error,
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  const timedOut = /timeout/i.test(message);
  return new ShardctlError(`${prefix}${timedOut ? 'connection timed out' : message}`, {
    code: timedOut ? 'UNREACHABLE' : 'FAILED',
    ...(context.shard ? { shard: context.shard } : {}),
    cause: error,
  });
}
