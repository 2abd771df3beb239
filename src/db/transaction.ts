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

/** Applies the per-transaction settings of `options` (after BEGIN). */
export async function applyLocalSettings(client: PoolClient, options: TransactionOptions): Promise<void> {
  const settings = localSettings(options);
  const names = Object.keys(settings);
  if (names.length === 0) return;
  // One round trip for all of them; values are parameters, never spliced into SQL.
  await client.query(
    `SELECT ${names.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ')}`,
    names.flatMap((n) => [n, settings[n]!]),
  );
}

/**
 * `BEGIN ...; SELECT set_config(...)`: a transaction and its settings in one round trip (one
 * simple-protocol message; names and values quoted as literals).
 *
 * @example
 * beginWithSettingsSql({ readOnly: true, settings: { TimeZone: 'UTC' } }) // "BEGIN READ ONLY; SELECT set_config('TimeZone', 'UTC', true)"
 */
export function beginWithSettingsSql(options: TransactionOptions = {}): string {
  const settings = localSettings(options);
  const names = Object.keys(settings);
  if (names.length === 0) return beginSql(options);
  const sets = names.map((n) => `set_config(${quoteLiteral(n)}, ${quoteLiteral(settings[n]!)}, true)`);
  return `${beginSql(options)}; SELECT ${sets.join(', ')}`;
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
    // Inside the try: a setting that fails leaves the transaction open (aborted), and the ROLLBACK ends it.
    await client.query(beginWithSettingsSql(options));
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}
