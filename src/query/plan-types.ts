import type { SelectStmt } from '@pgsql/types';
import type { ShardMap } from '../config/shard-map.js';
import type { RelationName, StarColumns } from './plan-star.js';

/** How shard results become the answer. */
export type MergeKind = 'single' | 'concat' | 'final' | 'pullup';

/** A sort key of a streaming merge: shard-result column, direction, NULL order. */
export interface SortKey {
  col: number;
  desc: boolean;
  nullsFirst: boolean;
}

interface PlanBase {
  /** Shards asked, in map order. */
  shards: string[];
  /** Why these shards (routing). */
  routing: string;
  /** SQL sent to every shard. */
  shardSql: string;
  params: unknown[];
  /** Columns of the shard result shown to the user (the rest are hidden helpers); -1: all. */
  visible: number;
  /** Rows skipped after merging (concat: in the client; final: in the final query or the stream). */
  offset?: bigint;
  /** concat: rows kept after merging. */
  limit?: bigint;
  /** Merge steps, for --explain. */
  steps: string[];
}

/** One shard answers, with the query unchanged. */
export interface SinglePlan extends PlanBase {
  kind: 'single';
}

/** Every shard answers; rows are appended and the window applied once. */
export interface ConcatPlan extends PlanBase {
  kind: 'concat';
}

/** Every shard answers part of it; a final PostgreSQL query (or a streaming merge) combines them. */
export interface FinalPlan extends PlanBase {
  kind: 'final';
  /** The combine query over all shard rows; shard columns and merges are `MergeOp` nodes (merge-ops.ts). */
  final: SelectStmt;
  /** Output column names of the answer. */
  columns: string[];
  /** Shard-result columns whose collation (pg_collation_for) decides how they order: column -> collation column. */
  collations: Record<number, number>;
  /** Plain ordered queries without LIMIT: the sort keys of a streaming k-way merge. */
  sortKeys?: SortKey[];
}

/** One distributed table reference of a pull-up: what every shard returns for it. */
export interface PullupPart {
  /** The CTE standing for it in the final query. */
  cte: string;
  /** The table, as the query named it (its columns' collations are read from the catalog). */
  relation: string;
  table: RelationName;
  /** The columns returned (projection push-down); absent: every column (`*`). */
  columns?: string[];
  /** The conjuncts evaluated on the shards (predicate push-down), as SQL. */
  pushed?: string;
  shardSql: string;
  params: unknown[];
}

/** Every shard returns each distributed reference's filtered rows; PostgreSQL runs the query over them on one shard. */
export interface PullupPlan extends PlanBase {
  kind: 'pullup';
  /** The user's query over the CTEs of pulled-up rows (`PULLED`..., aliased as the tables were). */
  final: SelectStmt;
  /** One per distributed table reference, in the order of the query's text. */
  parts: PullupPart[];
  /** The construct that needs the rows together (named when --max-rows is exceeded). */
  construct: string;
}

/** A query plan: what each shard runs and how the results merge. */
export type QueryPlan = SinglePlan | ConcatPlan | FinalPlan | PullupPlan;

/** Inputs of `planQuery`. */
export interface PlanQueryInput {
  sql: string;
  params: unknown[];
  map: ShardMap;
  /** Shard of a tenant key (directory applied). */
  locate: (tenant: string) => string;
  /** Only these shards (--shard). */
  shards?: string[];
  /** Only this tenant's shard (--tenant). */
  tenant?: string;
  /**
   * The catalog holds no recorded placement rule (`router.ruleRecorded` false, router not offline):
   * `locate` is unproven, so a query is never pinned to one shard by it. Default false.
   */
  ruleUnproven?: boolean;
  /**
   * Function names the shards' catalogs call aggregates (user-defined ones too), as `lookupAggregates`
   * reads them. Default: none beyond the built-in ones the planner knows.
   */
  aggregates?: ReadonlySet<string>;
  /**
   * The columns of the relations a `*` in the select list stands for, as `lookupStarColumns` reads them
   * from `shard`'s catalog. Without them a multi-shard `SELECT *` that must be sorted or grouped is refused.
   */
  /**
   * The columns of the distributed tables a pull-up reads, by `relationKey`, as `lookupStarColumns` reads
   * them: the shards then return only the columns the query uses. Without them a pull-up returns `*`.
   */
  relationColumns?: StarColumns;
  star?: {
    shard: string;
    columns: StarColumns;
    /** Why `shard` could not list them (unreachable, ...): raised only by a plan that needs them. */
    failure?: Error;
  };
}
