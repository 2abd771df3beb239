/**
 * shardctl's public library entry: what library users need (the map loader and validator, placement,
 * the router, every command as a function that returns data, errors and types). The CLI imports from
 * here and, for what only it needs, from `src/internal.ts`. Modules that need node-postgres or Kysely
 * load them on first use, so importing this entry stays cheap.
 */
import type { ShardMap } from './config/shard-map.js';
import { createRouter as createShardRouter } from './router/create-router.js';
import { withScatter, type Router as ScatterRouter } from './query/scatter.js';
import { withTransactions, type TransactionMethods, type TransactionRouterOptions } from './tx/router-tx.js';

export { ExitCode, ShardctlError, ConfigError, fromDriverError } from './errors.js';
export type { ExitCodeValue, ConfigProblem, PgErrorFields, ShardctlErrorOptions } from './errors.js';
export { redact, redactUrl } from './redact.js';
export { loadShardMap, defaultShardMapPath } from './config/load-shard-map.js';
export { parseShardMap } from './config/validate-shard-map.js';
export { parseDuration } from './config/units.js';
export type { ParseShardMapOptions } from './config/validate-shard-map.js';
export { interpolateEnv } from './config/interpolate-env.js';
export { describeShardMap } from './config/describe-shard-map.js';
export type { ShardMapSummary } from './config/describe-shard-map.js';
export type {
  ShardMap,
  Shard,
  ShardKeyType,
  BucketRange,
  PlacementRule,
  RawShardMap,
  MigrateSettings,
} from './config/shard-map.js';
export { shardKeyColumn } from './config/shard-map.js';
export { parseTenant, tenantText } from './placement/tenant-key.js';
export type { TenantKey } from './placement/tenant-key.js';
export { compileRule, bucketOf, moduloIndex, tenantHash, ruleSql } from './placement/placement.js';
export type { RulePlacement } from './placement/placement.js';
export { hashBytes, hashInt8, hashUint32 } from './placement/pg-hash.js';
export { withScatter } from './query/scatter.js';
export type { ScatterOptions } from './query/scatter.js';
export { withTransactions } from './tx/router-tx.js';
export type { TransactionMethods, TransactionRouterOptions, BackgroundRecoveryOptions } from './tx/router-tx.js';
export type { TransactionHandle, DistributedTransactionOptions } from './tx/two-phase.js';
export { recoverTransactions } from './tx/recover.js';
export type { RecoverOptions, RecoverReport, RecoveredTransaction } from './tx/recover.js';
export type { PreparedTransaction } from './tx/prepared.js';
export { execEverywhere } from './tx/exec-everywhere.js';
export type { ExecOptions, ExecReport } from './tx/exec-everywhere.js';
export { copyReferenceTable } from './tx/reference-copy.js';
export type { ReferenceCopyReport } from './tx/reference-copy.js';
export type { ShardRouter, RouterOptions, Location, UnrecordedRule } from './router/create-router.js';
export { ShardPools, withAdvisoryLock, ADVISORY_NAMESPACE } from './db/shard-pools.js';
export type { ShardPoolsOptions, AdvisoryLockOptions, LockHolder } from './db/shard-pools.js';
export { forEachShard } from './db/for-each-shard.js';
export type { ShardResult, ForEachShardOptions } from './db/for-each-shard.js';
export { CATALOG_STEPS, CATALOG_VERSION, ensureCatalogSchema, readCatalogVersion } from './catalog/catalog-schema.js';
export { readDirectory, setPlacement } from './catalog/directory.js';
export type { Directory } from './catalog/directory.js';
export { listShards, checkShards, shardBalance } from './shards/check-shards.js';
export type { ShardSummary, ShardHealth, ShardBalance, CheckShardsOptions } from './shards/check-shards.js';
export { locateTenants } from './locate/locate-tenants.js';
export type { LocateReport } from './locate/locate-tenants.js';
export { devUp, devDown, devStatus } from './dev/dev-cluster.js';
export type { DevUpOptions, DevUpResult, DevServer } from './dev/dev-cluster.js';
export { SHARDCTL_VERSION } from './version.js';
export { verifyCluster, applyFixes, VERIFY_CHECKS } from './verify/verify-cluster.js';
export type {
  VerifyReport,
  VerifyOptions,
  VerifyCheck,
  Finding,
  FindingKind,
  Fix,
  FixResult,
} from './verify/verify-cluster.js';
export { planRebalance } from './rebalance/plan-rebalance.js';
export type { PlanInput, PlanTenant, PlannedMove, RebalancePlan } from './rebalance/plan-rebalance.js';
export { measureTenantSizes } from './rebalance/tenant-sizes.js';
export type { TenantSize, ShardSize, TenantSizesOptions } from './rebalance/tenant-sizes.js';
export { freezePlacements, pruneDirectory } from './rebalance/freeze-placements.js';
export type { FreezeReport } from './rebalance/freeze-placements.js';
export { writeRuleState } from './catalog/rule-state.js';
export { adoptFleet } from './adopt/adopt-fleet.js';
export type { AdoptOptions, AdoptReport, AdoptShard, MisplacedTenant } from './adopt/adopt-fleet.js';
export { planMove, moveTenant, resumeMove, abortMove, cleanupMove } from './move/move-tenant.js';
export type { MovePreview, MoveEvent, MoveOptions, MoveResult } from './move/move-tenant.js';
export { MOVE_STATES, SWITCHED_STATES, tenantsLabel, tenantsOf } from './move/move-journal.js';
export type { MoveRecord, MoveState, MovePlanRecord } from './move/move-journal.js';
export { fencesOf, removeTenantFence, movesOf, moveSlotsOf } from './move/list-fences.js';
export { replicationName } from './move/replication.js';
export { moveReport } from './move/move-report.js';
export type { MoveReport, PauseAttempt } from './move/move-report.js';
export type { BlockingSession, MoveWait } from './move/waits.js';
export { isFenceError } from './router/fence-error.js';
export type { Fence } from './move/fence.js';
export { computeFleetPlan, applyFleetPlan, resumeFleetPlan } from './rebalance/apply-plan.js';
export type {
  FleetPlan,
  FleetPlanOptions,
  ApplyReport,
  AppliedMove,
  ApplyOptions,
  PlanProgress,
} from './rebalance/apply-plan.js';
export { migrateShards, findDrift } from './migrate/migrate-shards.js';
export type {
  MigrateOptions,
  MigrateEvent,
  ShardMigration,
  MigrationFailure,
  Drift,
  AppliedMigration,
} from './migrate/migrate-shards.js';
export { migrationStatus, createMigration } from './migrate/migrate-status.js';
export type { MigrationStatusReport, ShardMigrationStatus, MigrationCell } from './migrate/migrate-status.js';
export { lineColumn, nextMigrationName, compareIds } from './migrate/migration-files.js';
export type { MigrationFile } from './migrate/migration-files.js';
export { runQuery } from './query/run-query.js';
export type { QueryResult, QueryField, RunQueryOptions, MissingShard, ValueShape } from './query/run-query.js';
export { planQuery, functionNames } from './query/plan-query.js';
export type {
  QueryPlan,
  PlanQueryInput,
  MergeKind,
  SinglePlan,
  ConcatPlan,
  FinalPlan,
  SortKey,
} from './query/plan-query.js';
export type { MergeOp } from './query/merge-ops.js';
export { loadSqlTools } from './query/sql-ast.js';
export { streamQuery } from './query/stream-query.js';
export type { QueryStream } from './query/stream-query.js';

/**
 * Routes tenants to shards (`locate`, `db`, `shard`), answers scatter-gather SELECTs (`scatter`) and
 * runs transactions across shards (`transaction`, two-phase commit; `recover`).
 */
export type Router = ScatterRouter & TransactionMethods;

/**
 * Creates a router for a map (or the path of one): the router layer's router, with `scatter` and
 * `transaction`. Reads the placement directory once from the catalog shard unless `offline`.
 *
 * @example
 * const router = await createRouter('shards.yaml');
 * await router.transaction(async (tx) => {
 *   await tx.db<DB>(1).updateTable('accounts').set((eb) => ({ balance: eb('balance', '-', 5) })).where('tenant_id', '=', 1).execute();
 *   await tx.db<DB>(2).updateTable('accounts').set((eb) => ({ balance: eb('balance', '+', 5) })).where('tenant_id', '=', 2).execute();
 * });
 * await router.close();
 */
export async function createRouter(
  mapOrPath: ShardMap | string,
  options: TransactionRouterOptions = {},
): Promise<Router> {
  return withTransactions(withScatter(await createShardRouter(mapOrPath, options)), options);
}
