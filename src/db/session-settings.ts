/**
 * Settings every shardctl session starts with, sent in the startup packet (`options=-c name=value`):
 * they hold from the first statement, on every connection of every pool, whichever command opened it.
 */

/**
 * Default `idle_in_transaction_session_timeout`, in ms: a client stuck or killed inside a transaction
 * (a hung stream, a paused process) gives up its locks and snapshot after this long instead of
 * holding back vacuum and blocking DDL on a production shard. Long enough that no shardctl step waits
 * this long between two statements of one transaction.
 */
export const DEFAULT_IDLE_IN_TRANSACTION_MS = 60_000;

/** What {@link sessionOptions} needs. */
export interface SessionSettings {
  /** `idle_in_transaction_session_timeout` in ms; 0 disables it for the session. */
  idleInTransactionMs: number;
  /** `statement_timeout` in ms; undefined keeps the server's. */
  statementTimeoutMs?: number;
  /** `default_transaction_read_only=on`. */
  readOnly?: boolean;
  /** The `options` the shard's URL already carries (`?options=...`): kept, after ours, so the URL wins. */
  urlOptions?: string | null;
}

/**
 * The startup `options` string of a session. Values are integers or `on`, never spliced user text;
 * the URL's own options come last, so an operator's explicit setting in the map wins over a default.
 *
 * @example
 * sessionOptions({ idleInTransactionMs: 60000, statementTimeoutMs: 5000 })
 * // '-c idle_in_transaction_session_timeout=60000 -c statement_timeout=5000'
 */
export function sessionOptions(s: SessionSettings): string {
  const parts = [`-c idle_in_transaction_session_timeout=${Math.max(0, Math.floor(s.idleInTransactionMs))}`];
  if (s.statementTimeoutMs !== undefined && s.statementTimeoutMs > 0)
    parts.push(`-c statement_timeout=${Math.floor(s.statementTimeoutMs)}`);
  if (s.readOnly) parts.push('-c default_transaction_read_only=on');
  if (s.urlOptions) parts.push(s.urlOptions);
  return parts.join(' ');
}

/** The `options` query parameter of a connection URL, if any. */
export function urlOptions(url: string): string | null {
  try {
    return new URL(url).searchParams.get('options');
  } catch {
    return null;
  }
}
