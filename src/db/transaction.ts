import type { PoolClient } from 'pg';
import { quoteLiteral } from './sql.js';

/** Options of {@link withTransaction}. */
export interface TransactionOptions {
  /** Isolation level. Default: the server's (READ COMMITTED). */
  isolation?: 'read committed' | 'repeatable read' | 'serializable';
  /** `READ ONLY`: the server itself refuses any write. */
  readOnly?: boolean;
  /** `lock_timeout` for this transaction, in ms: DDL on a live table waits for its writers, bounded. */
  lockTimeoutMs?: number;
  /** `statement_timeout` for this transaction, in ms. */
  statementTimeoutMs?: number;
  /**
   * `idle_in_transaction_session_timeout` for this transaction, in ms (0: none). For a transaction
   * that must sit idle while another session works (a snapshot read by a copy whose target runs long
   * foreign-key checks): the pools' default (60 s) would end it.
   */
  idleInTransactionTimeoutMs?: number;
  /** Further settings for this transaction only (`set_config(name, value, true)`, i.e. `SET LOCAL`). */
  settings?: Record<string, string>;
  /**
   * Constant SQL (no parameters, no user input) run right after BEGIN and the settings, in the same
   * round trip: `SET LOCAL ...`, `SET CONSTRAINTS ...`, `SAVEPOINT ...`.
   */
  prelude?: string;
}

/** The `BEGIN` statement for these options. */
export function beginSql(options: TransactionOptions = {}): string {
  const parts = ['BEGIN'];
  if (options.isolation) parts.push(`ISOLATION LEVEL ${options.isolation.toUpperCase()}`);
  if (options.readOnly) parts.push('READ ONLY');
  return parts.join(' ');
}

/** The per-transaction settings of `options`, by name. */
function localSettings(options: TransactionOptions): Record<string, string> {
  const settings: Record<string, string> = { ...options.settings };
  if (options.lockTimeoutMs !== undefined) settings.lock_timeout = `${Math.max(1, Math.floor(options.lockTimeoutMs))}`;
  if (options.statementTimeoutMs !== undefined) {
    settings.statement_timeout = `${Math.max(1, Math.floor(options.statementTimeoutMs))}`;
  }
  if (options.idleInTransactionTimeoutMs !== undefined) {
    settings.idle_in_transaction_session_timeout = `${Math.max(0, Math.floor(options.idleInTransactionTimeoutMs))}`;
  }
  return settings;
}

/** Applies the per-transaction settings of `options` (after BEGIN), in one round trip. */
export async function applyLocalSettings(client: PoolClient, options: TransactionOptions): Promise<void> {
  const settings = localSettings(options);
  const names = Object.keys(settings);
  if (names.length === 0) return;
  await client.query(
    `SELECT ${names.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ')}`,
    names.flatMap((n) => [n, settings[n]!]),
  );
}

/**
 * `BEGIN ...; SELECT set_config(...); <prelude>` for the options: a transaction opened with its
 * settings in one round trip (a simple-protocol query; the values are quoted literals).
 *
 * @example
 * beginWithSettingsSql({ readOnly: true, settings: { 'shardctl.x': '1' } })
 * // "BEGIN READ ONLY; SELECT set_config('shardctl.x', '1', true)"
 */
export function beginWithSettingsSql(options: TransactionOptions = {}): string {
  const settings = localSettings(options);
  const parts = [beginSql(options)];
  const names = Object.keys(settings);
  if (names.length > 0)
    parts.push(
      `SELECT ${names.map((n) => `set_config(${quoteLiteral(n)}, ${quoteLiteral(settings[n]!)}, true)`).join(', ')}`,
    );
  if (options.prelude) parts.push(options.prelude);
  return parts.join('; ');
}

/**
 * Runs `fn` inside a transaction on an already connected client: commit on success, rollback on any
 * error (the rollback's own failure never hides the first error). The one place where shardctl writes
 * BEGIN and COMMIT; {@link ShardPools.withTransaction} is this on a pooled connection.
 *
 * @example
 * const n = await withTransaction(client, async () => (await client.query('SELECT count(*) FROM t')).rows[0],
 *   { isolation: 'repeatable read', readOnly: true });
 * await withTransaction(client, () => client.query('CREATE TRIGGER ...'), { lockTimeoutMs: 30_000 });
 */
export async function withTransaction<T>(
  client: PoolClient,
  fn: () => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  try {
    // Round trips count: moves open transactions inside their write pause.
    await client.query(beginWithSettingsSql(options));
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}
