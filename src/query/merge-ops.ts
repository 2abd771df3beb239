/**
 * The typed vocabulary the planner and the final merge share. The planner writes the final query as a
 * parse tree in which shard-result columns and the merges of partial aggregates are {@link MergeOp}
 * nodes; the executor replaces each one once it knows the shards' column types and collations.
 */
import type { Node } from './sql-ast.js';

/** What a placeholder of the final query stands for. */
export type MergeOp =
  /** Shard-result column `col`, cast back to the shards' type (and collation). */
  | { op: 'column'; col: number }
  /** Sum of the partial sums in column `col`, kept in the partials' type (sum(int4) is bigint). */
  | { op: 'sum'; col: number }
  /** avg = sum of partial sums / sum of partial counts, exact in numeric (float8 for float inputs). */
  | { op: 'avg'; sum: number; count: number };

const KIND = 'ShardctlMerge';

/**
 * A placeholder node for a merge operation, to place anywhere an expression goes in the final query.
 *
 * @example
 * mergeNode({ op: 'column', col: 0 })
 */
export function mergeNode(op: MergeOp): Node {
  // Not a PostgreSQL node: it never reaches the deparser, the executor replaces it first.
  return { [KIND]: op } as unknown as Node;
}

/**
 * The merge operation a node stands for, or undefined for an ordinary node.
 *
 * @example
 * mergeOpOf(mergeNode({ op: 'sum', col: 2 })) // { op: 'sum', col: 2 }
 */
export function mergeOpOf(n: unknown): MergeOp | undefined {
  return n && typeof n === 'object' && KIND in n ? (n as Record<typeof KIND, MergeOp>)[KIND] : undefined;
}

/**
 * Placeholder for shard-result column `col`.
 *
 * @example
 * shardColumn(3) // mergeNode({ op: 'column', col: 3 })
 */
export function shardColumn(col: number): Node {
  return mergeNode({ op: 'column', col });
}
