/**
 * shardctl's CLI-only entry: what `src/cli/` needs beyond the public library (`src/index.ts`) —
 * low-level catalog and lock internals, the SQL the checks run, and the parsers behind the command-line
 * options. Not part of the package's exports; library users import `shardctl` (src/index.ts).
 */
export { parseSize, parseFraction } from './config/units.js';
export { LockKey, moveLockKey } from './db/lock-keys.js';
export { lockHolder, loadPg } from './db/shard-pools.js';
export { TENANT_TABLES_SQL } from './catalog/user-tables.js';
export { readDirectoryVersion } from './catalog/directory.js';
export { describeRule, ruleFingerprint, readRuleState, assertRuleUnchanged, FROZEN } from './catalog/rule-state.js';
export type { RuleDescription } from './catalog/rule-state.js';
export { MIGRATE_LOCK_KEY, readLedgerRows } from './migrate/migrate-shards.js';
export { readMigrationFolder, MIGRATION_NAME } from './migrate/migration-files.js';
export { misplacedRowsSql, bucketOwners } from './verify/misplaced-sql.js';
export { readSchema, fingerprint, diffTable } from './verify/schema-fingerprint.js';
export type { TableSchema, SchemaDifference } from './verify/schema-fingerprint.js';
export { readTenantTables } from './move/tenant-tables.js';
export type { TenantTable } from './move/tenant-tables.js';
export { planConflicts } from './rebalance/apply-plan.js';
