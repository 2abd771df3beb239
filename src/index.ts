/**
 * shardctl's public library entry. The CLI imports only from here, so it uses what library users get.
 * Modules that need node-postgres or Kysely load them on first use, so importing this entry stays cheap.
 */
export { ExitCode, ShardctlError, ConfigError, fromDriverError } from './errors.js';
export type { ExitCodeValue, ConfigProblem, PgErrorFields, ShardctlErrorOptions } from './errors.js';
export { redact, redactUrl } from './db/redact.js';
export { loadShardMap, defaultShardMapPath } from './config/load-shard-map.js';
export { parseShardMap, parseDuration } from './config/validate-shard-map.js';
export type { ParseShardMapOptions } from './config/validate-shard-map.js';
export { interpolateEnv } from './config/interpolate-env.js';
export { describeShardMap } from './config/describe-shard-map.js';
export type { ShardMapSummary } from './config/describe-shard-map.js';
export type { ShardMap, Shard, ShardKeyType, BucketRange, PlacementRule, RawShardMap, MigrateSettings } from './config/shard-map.js';
export { parseTenant, tenantText } from './placement/tenant-key.js';
export type { TenantKey } from './placement/tenant-key.js';
export { compileRule, bucketOf, moduloIndex, tenantHash, ruleSql } from './placement/placement.js';
export type { RulePlacement } from './placement/placement.js';
export { hashBytes, hashInt8, hashUint32 } from './placement/pg-hash.js';
export { createRouter } from './router/create-router.js';
export type { Router, RouterOptions, Location } from './router/create-router.js';
export { ShardPools, withAdvisoryLock, lockHolder, loadPg, ADVISORY_NAMESPACE } from './db/shard-pools.js';
export type { ShardPoolsOptions, AdvisoryLockOptions, LockHolder } from './db/shard-pools.js';
export { forEachShard } from './db/for-each-shard.js';
export type { ShardResult, ForEachShardOptions } from './db/for-each-shard.js';
export { CATALOG_STEPS, CATALOG_VERSION, ensureCatalogSchema, readCatalogVersion } from './catalog/catalog-schema.js';
export { readDirectory, readDirectoryVersion, setPlacement } from './catalog/directory.js';
export type { Directory } from './catalog/directory.js';
export { listShards, checkShards, shardBalance, TENANT_TABLES_SQL } from './shards/check-shards.js';
export type { ShardSummary, ShardHealth, ShardBalance, CheckShardsOptions } from './shards/check-shards.js';
export { locateTenants } from './locate/locate-tenants.js';
export type { LocateReport } from './locate/locate-tenants.js';
export { devUp, devDown, devStatus } from './dev/dev-cluster.js';
export type { DevUpOptions, DevUpResult, DevServer } from './dev/dev-cluster.js';
export { SHARDCTL_VERSION } from './version.js';
export { verifyCluster, applyFixes, VERIFY_CHECKS } from './verify/verify-cluster.js';
export type { VerifyReport, VerifyOptions, VerifyCheck, Finding, FindingKind, Fix, FixResult } from './verify/verify-cluster.js';
export { misplacedRowsSql, bucketOwners } from './verify/misplaced-sql.js';
export { readSchema, fingerprint, diffTable } from './verify/schema-fingerprint.js';
export type { TableSchema, SchemaDifference } from './verify/schema-fingerprint.js';
export { planRebalance } from './rebalance/plan-rebalance.js';
export type { PlanInput, PlanTenant, PlannedMove, RebalancePlan } from './rebalance/plan-rebalance.js';
export { measureTenantSizes } from './rebalance/tenant-sizes.js';
export type { TenantSize, ShardSize, TenantSizesOptions } from './rebalance/tenant-sizes.js';
export { freezePlacements, pruneDirectory } from './rebalance/freeze-placements.js';
export type { FreezeReport } from './rebalance/freeze-placements.js';
export { describeRule, ruleFingerprint, readRuleState, writeRuleState, assertRuleUnchanged, FROZEN } from './rebalance/rule-state.js';
export type { RuleDescription } from './rebalance/rule-state.js';
