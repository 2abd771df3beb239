import type { MoveState } from './move-journal.js';
import type { MoveWait } from './waits.js';

/** Progress of an online move, as the move reports it. */
export interface OnlineEvent {
  phase: MoveState;
  message?: string;
  table?: string;
  rows?: number;
  bytes?: number;
  totalRows?: number;
  totalBytes?: number;
  /**
   * WAL of the source server (every database) past what the target's slot confirmed: an upper bound,
   * since the target confirms in batches and skips other databases' WAL only when it confirms.
   */
  lagBytes?: number;
  /** Replication lag in seconds: the walsender's replay lag while catching up, a mark's round trip once caught up. */
  lagSeconds?: number;
  /** How long the move has waited so far for a mark written on the source to be applied on the target, ms. */
  markWaitMs?: number;
  /** Rows deleted so far from `table` by the cleanup (with `rows` the last batch). */
  deletedRows?: number;
  /** A long wait: what it waits for and why (sessions, their age, how to end them). */
  wait?: MoveWait;
  /** Length of a write pause, ms (after it ended). */
  pauseMs?: number;
}

/** Options of the online phases (a subset of the move's options). */
export interface OnlineOptions {
  /** Longest write pause, ms: a drain that does not fit lifts the fence (`--max-pause`). Default 1000. */
  maxPauseMs?: number;
  /** Switch attempts before the move fails (writes continue). Default 5. */
  switchAttempts?: number;
  /** Wait between switch attempts, ms, doubled each time. Default 1000. */
  retryDelayMs?: number;
  /** How long the target may stay disconnected from the source's slot, ms. Default 30000. */
  connectWaitMs?: number;
  /** How long to wait for table locks while installing triggers, ms. Default 30000. */
  waitMs?: number;
  maxBytesPerSecond?: number;
}
