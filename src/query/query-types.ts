import type { ShardRouter } from '../router/create-router.js';
import type { QueryPlan } from './plan-types.js';

/** A row of an answer: PostgreSQL's text values (exact: no JavaScript numbers). */
export type Row = (string | null)[];

/** A result column. */
export interface QueryField {
  name: string;
  /** PostgreSQL type oid (20 int8, 1700 numeric, 25 text, ...). */
  typeOid: number;
  /**
   * How the values are built when the oid alone does not say (composite types, arrays of them,
   * domains, anonymous records): set by `streamQuery` from a shard's catalog.
   */
  shape?: ValueShape;
}

/**
 * The structure of a column's values: a scalar rendered by its type oid, an array of elements, a
 * composite (named row type: its attributes, in order) or an anonymous record (PostgreSQL sends no
 * field types for it: its fields stay text).
 */
export type ValueShape =
  | { kind: 'scalar'; typeOid: number }
  | { kind: 'array'; element: ValueShape }
  | { kind: 'composite'; attributes: { name: string; shape: ValueShape }[] }
  | { kind: 'record' };

/** A shard left out with `allowPartial`, with the reason. */
export interface MissingShard {
  shard: string;
  error: string;
}

/** The answer of `runQuery`: rows as PostgreSQL's text values (exact: no JavaScript numbers). */
export interface QueryResult {
  fields: QueryField[];
  rows: Row[];
  plan: QueryPlan;
  /** Shards left out with `allowPartial`, with the reason. */
  missing: MissingShard[];
}

/** A query answer whose rows arrive as they are merged (bounded memory for plain and ordered queries). */
export interface QueryStream {
  fields: QueryField[];
  /** The rows one by one. Consume either `rows` or `batches`, not both. */
  rows: AsyncGenerator<Row>;
  /** The same rows in batches (cheaper for exports). */
  batches: AsyncGenerator<Row[]>;
  plan: QueryPlan;
  missing: MissingShard[];
}

/** Options of `runQuery` and `streamQuery`. */
export interface RunQueryOptions {
  /** Only this tenant's shard. */
  tenant?: string;
  /** Only these shards. */
  shards?: string[];
  /** statement_timeout on every shard, ms. Default: none. */
  statementTimeoutMs?: number;
  /** Connection timeout, ms. Default 5000. */
  timeoutMs?: number;
  /** Answer from the reachable shards; name the others in `missing`. Default false. */
  allowPartial?: boolean;
  /** Most rows held in memory at once (shard rows before merging). Default 1,000,000. */
  maxRows?: number;
  /** Plan only: run nothing. */
  explain?: boolean;
  /** An open router to reuse (the library's `router.scatter`). */
  router?: ShardRouter;
  /** Internal: sort in a final PostgreSQL query instead of the streaming merge. */
  finalSort?: boolean;
}

/** Default of {@link RunQueryOptions.maxRows}. */
export const DEFAULT_MAX_ROWS = 1_000_000;
