import type { PoolClient } from 'pg';
import { withTransaction } from '../db/transaction.js';
import { ADVISORY_NAMESPACE, LockKey } from '../db/lock-keys.js';
import { SHARDCTL_VERSION } from '../version.js';

/**
 * One upgrade step of shardctl's internal schema (`shardctl` on every shard). Steps are applied in
 * version order, each once, under an advisory lock, in one transaction with the version bump.
 */
export interface CatalogStep {
  version: number;
  description: string;
  sql: string;
}

/**
 * Step 8: `shardctl.locate(tenant)` answers in SQL exactly what `shardctl locate` answers: the
 * directory's entry, else the recorded rule (`shardctl.rule_state.rule`; after a freeze, the rule of
 * the map that froze, kept under `placement`). Overloads for bigint, uuid and text keys; a text
 * argument is read as the recorded key type, so `locate('007')` on a bigint key finds tenant 7. The
 * hash is PostgreSQL's own (`hashint8`, `uuid_hash`, `hashtext(... COLLATE "C")`), as in
 * src/placement/placement.ts. Without a recorded rule it raises rather than guess.
 */
const LOCATE_FUNCTION_SQL = `
  CREATE FUNCTION shardctl.locate(tenant_key text) RETURNS text LANGUAGE plpgsql STABLE AS $$
  DECLARE
    st record;
    r jsonb;
    k text;
    s text;
    b int8;
    n int;
  BEGIN
    SELECT fingerprint, rule INTO st FROM shardctl.rule_state;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'shardctl.locate: this catalog records no placement rule' USING ERRCODE = 'P0001',
        HINT = 'run shardctl adopt with the map the applications use: it checks the data and records the rule';
    END IF;
    r := CASE WHEN st.fingerprint = '*' THEN st.rule -> 'placement' ELSE st.rule END;
    IF r IS NULL THEN
      RAISE EXCEPTION 'shardctl.locate: the directory is frozen and the catalog does not know the rule for new tenants' USING ERRCODE = 'P0001',
        HINT = 'run shardctl adopt (or shardctl rebalance --freeze) with the map the applications use';
    END IF;
    k := CASE r ->> 'keyType' WHEN 'bigint' THEN (tenant_key::int8)::text WHEN 'uuid' THEN (tenant_key::uuid)::text ELSE tenant_key END;
    SELECT p.shard INTO s FROM shardctl.placements p WHERE p.tenant = k;
    IF FOUND THEN
      RETURN s;
    END IF;
    IF r ->> 'strategy' = 'modulo' THEN
      n := jsonb_array_length(r -> 'shards');
      RETURN r -> 'shards' ->> ((((k::int8 % n) + n) % n)::int);
    END IF;
    b := ((CASE r ->> 'keyType' WHEN 'bigint' THEN hashint8(k::int8) WHEN 'uuid' THEN uuid_hash(k::uuid)
           ELSE hashtext(k COLLATE "C") END)::int8 & 4294967295) % (r ->> 'buckets')::int8;
    SELECT x ->> 'shard' INTO s FROM jsonb_array_elements(r -> 'ranges') x
     WHERE b BETWEEN (x ->> 'from')::int8 AND (x ->> 'to')::int8;
    RETURN s;
  END $$;
  CREATE FUNCTION shardctl.locate(tenant_key bigint) RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT shardctl.locate(tenant_key::text) $$;
  CREATE FUNCTION shardctl.locate(tenant_key uuid) RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT shardctl.locate(tenant_key::text) $$;
  COMMENT ON FUNCTION shardctl.locate(text) IS 'The shard of a tenant: the directory, else the recorded placement rule (as shardctl locate answers).';
`;

/**
 * The internal schema's history. Every shard gets every step, so that any shard can become the
 * catalog and every shard can hold a ledger and fences. Append only: never edit a released step.
 */
export const CATALOG_STEPS: CatalogStep[] = [
  {
    version: 1,
    description: 'schema version and placement directory',
    sql: `
      CREATE SCHEMA IF NOT EXISTS shardctl;
      COMMENT ON SCHEMA shardctl IS 'Internal objects of shardctl: placement directory, migration ledger, move journal, fences.';
      CREATE TABLE shardctl.schema_version (
        version          integer PRIMARY KEY,
        description      text NOT NULL,
        applied_at       timestamptz NOT NULL DEFAULT now(),
        shardctl_version text NOT NULL
      );
      -- Tenants whose shard differs from the placement rule; tenant keys in canonical text form.
      CREATE TABLE shardctl.placements (
        tenant     text PRIMARY KEY,
        shard      text NOT NULL,
        move_id    bigint,
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      -- A single counter bumped by every change of the directory, so routers re-read it only on change.
      CREATE TABLE shardctl.directory_version (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version   bigint NOT NULL DEFAULT 0
      );
      INSERT INTO shardctl.directory_version DEFAULT VALUES;
      CREATE FUNCTION shardctl.bump_directory_version() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE shardctl.directory_version SET version = version + 1;
        RETURN NULL;
      END $$;
      CREATE TRIGGER placements_bump_version
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON shardctl.placements
        FOR EACH STATEMENT EXECUTE FUNCTION shardctl.bump_directory_version();
    `,
  },
  {
    version: 2,
    description: 'migration ledger',
    sql: `
      -- One row per migration file applied to this shard.
      CREATE TABLE shardctl.migrations (
        id               text PRIMARY KEY,
        name             text NOT NULL,
        checksum         text NOT NULL,
        applied_at       timestamptz NOT NULL DEFAULT now(),
        duration_ms      integer NOT NULL,
        shardctl_version text NOT NULL
      );
    `,
  },
  {
    version: 3,
    description: 'move journal and fences',
    sql: `
      -- One row per tenant move (catalog shard). States: planned, fenced, copying, copied, verified,
      -- switched, cleaned, done; failed, aborted. Each state is written before its action runs.
      CREATE TABLE shardctl.moves (
        id           bigserial PRIMARY KEY,
        tenant       text NOT NULL,
        source_shard text NOT NULL,
        target_shard text NOT NULL,
        state        text NOT NULL CHECK (state IN ('planned', 'fenced', 'copying', 'copied', 'verified', 'switched', 'cleaned', 'done', 'failed', 'aborted')),
        mode         text NOT NULL DEFAULT 'fenced',
        keep_source  boolean NOT NULL DEFAULT false,
        plan         jsonb NOT NULL,
        stats        jsonb NOT NULL DEFAULT '{}',
        failed_in    text,
        error        text,
        plan_id      bigint,
        created_at   timestamptz NOT NULL DEFAULT now(),
        updated_at   timestamptz NOT NULL DEFAULT now()
      );
      -- At most one move of a tenant in flight.
      CREATE UNIQUE INDEX moves_one_in_flight ON shardctl.moves (tenant) WHERE state NOT IN ('done', 'aborted');
      CREATE TABLE shardctl.move_events (
        move_id bigint NOT NULL REFERENCES shardctl.moves (id),
        at      timestamptz NOT NULL DEFAULT clock_timestamp(),
        state   text NOT NULL,
        message text
      );
      -- Tenants whose writes this shard rejects (source shards): during a move, and after it as a
      -- tombstone so that an app with a stale map errors instead of writing to the old shard.
      CREATE TABLE shardctl.fences (
        tenant     text PRIMARY KEY,
        move_id    bigint,
        target     text,
        reason     text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      -- Row trigger installed on tenant tables: TG_ARGV[0] is the shard-key column. shardctl's own
      -- cleanup sets shardctl.fence_bypass for its transaction.
      CREATE FUNCTION shardctl.fence_guard() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        k text;
        f record;
      BEGIN
        IF current_setting('shardctl.fence_bypass', true) = 'on' THEN
          RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END IF;
        -- The old row's tenant (UPDATE, DELETE) and the new row's (INSERT, UPDATE).
        FOREACH k IN ARRAY ARRAY[CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) ->> TG_ARGV[0] END,
                                 CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) ->> TG_ARGV[0] END] LOOP
          CONTINUE WHEN k IS NULL;
          SELECT * INTO f FROM shardctl.fences WHERE tenant = k;
          IF FOUND THEN
            RAISE EXCEPTION 'shardctl: tenant % is fenced on this shard: %', k, f.reason
              USING ERRCODE = 'P0001', HINT = 'the tenant ' || CASE WHEN f.target IS NOT NULL THEN 'moves or moved to ' || f.target ELSE 'is fenced' END || '; route through the current shard map (shardctl locate ' || k || ')';
          END IF;
        END LOOP;
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
      END $$;
      CREATE FUNCTION shardctl.fence_truncate_guard() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF current_setting('shardctl.fence_bypass', true) IS DISTINCT FROM 'on' AND EXISTS (SELECT 1 FROM shardctl.fences) THEN
          RAISE EXCEPTION 'shardctl: TRUNCATE of % refused: tenants on this shard are fenced (see shardctl fences)', TG_TABLE_NAME USING ERRCODE = 'P0001';
        END IF;
        RETURN NULL;
      END $$;
    `,
  },
  {
    version: 5,
    description: 'placement rule state',
    sql: `
      -- The placement rule that tenants absent from the directory follow ('*' after a freeze: every
      -- tenant is in the directory, so any rule is safe). Routers refuse a map whose rule differs.
      CREATE TABLE shardctl.rule_state (
        singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        fingerprint text NOT NULL,
        rule        jsonb NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 6,
    description: 'fleet rebalance plans',
    sql: `
      -- A fleet plan applied by \`rebalance --apply\`: its moves point back to it (moves.plan_id).
      CREATE TABLE shardctl.rebalance_plans (
        id         bigserial PRIMARY KEY,
        state      text NOT NULL CHECK (state IN ('running', 'done', 'failed', 'stopped')),
        plan       jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 7,
    description: 'online moves',
    sql: `
      -- Online moves add two states before the fence: syncing (slot, snapshot copy, subscription) and
      -- replicating (the subscription applies the tenant's changes while writes continue).
      ALTER TABLE shardctl.moves DROP CONSTRAINT IF EXISTS moves_state_check;
      ALTER TABLE shardctl.moves ADD CONSTRAINT moves_state_check
        CHECK (state IN ('planned', 'syncing', 'replicating', 'fenced', 'copying', 'copied', 'verified', 'switched', 'cleaned', 'done', 'failed', 'aborted'));
      -- Source shards: primary keys of the moving tenant's rows written after the copy's snapshot,
      -- recorded in the writing transaction, so that the final check under the fence compares only
      -- those rows (pk NULL: a TRUNCATE, which logical replication does not filter by tenant).
      CREATE TABLE shardctl.move_changes (
        id      bigserial PRIMARY KEY,
        move_id bigint NOT NULL,
        tbl     text NOT NULL,
        pk      jsonb
      );
      CREATE INDEX move_changes_move ON shardctl.move_changes (move_id, id);
      -- Replicated with the tenant's rows: a mark seen on the target proves that every change
      -- committed on the source before it has been applied there (replication keeps commit order).
      CREATE TABLE shardctl.move_marks (
        move_id bigint NOT NULL,
        mark    bigint NOT NULL,
        at      timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (move_id, mark)
      );
      -- TG_ARGV[0]: move id; TG_ARGV[1]: primary-key columns as a text[] literal. The triggers that
      -- call it carry a WHEN clause on the tenant, so other tenants' writes never reach it.
      CREATE FUNCTION shardctl.track_change() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        cols text[] := TG_ARGV[1]::text[];
        tbl text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
      BEGIN
        IF TG_OP = 'TRUNCATE' THEN
          INSERT INTO shardctl.move_changes (move_id, tbl, pk) VALUES (TG_ARGV[0]::bigint, tbl, NULL);
          RETURN NULL;
        END IF;
        IF TG_OP <> 'INSERT' THEN
          INSERT INTO shardctl.move_changes (move_id, tbl, pk)
            SELECT TG_ARGV[0]::bigint, tbl, jsonb_object_agg(c, to_jsonb(OLD) -> c) FROM unnest(cols) c;
        END IF;
        IF TG_OP <> 'DELETE' THEN
          INSERT INTO shardctl.move_changes (move_id, tbl, pk)
            SELECT TG_ARGV[0]::bigint, tbl, jsonb_object_agg(c, to_jsonb(NEW) -> c) FROM unnest(cols) c;
        END IF;
        RETURN NULL;
      END $$;
    `,
  },
  {
    version: 8,
    description: 'shardctl.locate(tenant): the shard of a tenant in SQL',
    sql: LOCATE_FUNCTION_SQL,
  },
  {
    version: 9,
    description: 'group moves and their tenants',
    sql: `
      -- Every tenant of a move: its one tenant, or each tenant of a group move (one copy, one capture,
      -- one pause, one switch for all). At most one move in flight per tenant, groups included.
      CREATE TABLE shardctl.move_tenants (
        move_id   bigint NOT NULL REFERENCES shardctl.moves (id),
        tenant    text NOT NULL,
        in_flight boolean NOT NULL DEFAULT true,
        PRIMARY KEY (move_id, tenant)
      );
      CREATE UNIQUE INDEX move_tenants_one_in_flight ON shardctl.move_tenants (tenant) WHERE in_flight;
      INSERT INTO shardctl.move_tenants (move_id, tenant, in_flight)
        SELECT id, tenant, state NOT IN ('done', 'aborted') FROM shardctl.moves;
      -- moves.mode: 'fenced', 'online' (logical replication) or 'trigger' (change-log triggers); the
      -- trigger capture reuses move_changes, read whole against the ids the copy's snapshot saw.
      COMMENT ON COLUMN shardctl.moves.mode IS 'fenced, online (logical replication) or trigger (change-log triggers)';
    `,
  },
  {
    version: 10,
    description: 'two-phase commit decision records',
    sql: `
      -- One row per distributed transaction (catalog shard). The coordinator inserts its row with
      -- state 'commit' in a transaction it keeps open while the participants PREPARE; committing that
      -- transaction is the commit decision. Recovery inserts 'abort' for an id whose row it cannot see:
      -- the insert waits on the coordinator's open transaction, so it succeeds only once that
      -- transaction is gone, and then no commit can ever follow. Rows are deleted once no participant
      -- still holds the transaction prepared.
      CREATE TABLE shardctl.tx_decisions (
        id           bigserial PRIMARY KEY,
        state        text NOT NULL CHECK (state IN ('commit', 'abort')),
        participants text[] NOT NULL DEFAULT '{}',
        coordinator  text,
        created_at   timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 11,
    description: 'change log rows carry their transaction',
    sql: `
      -- The writing transaction of each change-log row: a reader compares it with the snapshot of its
      -- previous read and reads only what that read could not see. Rows logged before this step stay
      -- NULL and are read every time (no rewrite of a log a running move is writing).
      ALTER TABLE shardctl.move_changes ADD COLUMN xid xid8;
      ALTER TABLE shardctl.move_changes ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
    `,
  },
  {
    version: 12,
    description: 'directory changes notify routers',
    sql: `
      -- Every bump of the directory version (a move's switch, freeze, prune, adopt) sends the new version
      -- on channel shardctl_directory at commit. A router that LISTENs re-reads the directory at once
      -- instead of at its next TTL check: a writer paused by a move's fence resumes as soon as the
      -- switch commits. Routers that do not listen still poll; nothing depends on the notice arriving.
      CREATE FUNCTION shardctl.notify_directory_version() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('shardctl_directory', NEW.version::text);
        RETURN NULL;
      END $$;
      CREATE TRIGGER directory_version_notify
        AFTER UPDATE ON shardctl.directory_version
        FOR EACH ROW EXECUTE FUNCTION shardctl.notify_directory_version();
    `,
  },
];

/** The internal schema version this shardctl writes. */
export const CATALOG_VERSION = Math.max(...CATALOG_STEPS.map((s) => s.version));

/** Advisory lock key (in shardctl's namespace) serialising internal-schema upgrades on one database. */

/**
 * The internal schema version of a database, 0 when it has no `shardctl` schema (a cluster shardctl
 * did not create). Reads only.
 *
 * @example
 * await readCatalogVersion(client) // 0 on a fresh database
 */
export async function readCatalogVersion(client: PoolClient): Promise<number> {
  // Two statements: a query naming a missing table fails at parse time, even under a CASE.
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.schema_version')::text AS t");
  if (!exists.rows[0]?.t) return 0;
  const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM shardctl.schema_version');
  return r.rows[0]?.v ?? 0;
}

/** Versions of the internal-schema steps applied to a database (empty without a shardctl schema). */
export async function appliedSteps(client: PoolClient): Promise<number[]> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('shardctl.schema_version')::text AS t");
  if (!exists.rows[0]?.t) return [];
  return (await client.query<{ version: number }>('SELECT version FROM shardctl.schema_version')).rows.map(
    (r) => r.version,
  );
}

/**
 * Creates or upgrades the `shardctl` schema on one database, idempotently and safely when several
 * processes do it at once (an advisory lock serialises them). Returns the
 * versions it applied. Only commands that write call this; read-only commands never do.
 *
 * @example
 * await ensureCatalogSchema(client) // [1] the first time, [] after
 */
export async function ensureCatalogSchema(client: PoolClient): Promise<number[]> {
  // Fast path without a lock or a transaction: already current.
  const applied0 = new Set(await appliedSteps(client));
  if (CATALOG_STEPS.every((s) => applied0.has(s.version))) return [];
  const applied: number[] = [];
  // A session lock taken before BEGIN: the transaction that follows starts after the previous
  // holder committed, so it sees the tables that holder created (a lock taken inside the transaction
  // would leave this backend's catalog cache stale). Only this short section ever holds key 0.
  await client.query('SELECT pg_advisory_lock($1::int4, $2::int4)', [ADVISORY_NAMESPACE, LockKey.catalogSchema]);
  try {
    await withTransaction(client, async () => {
      // Applied by membership, not by the highest version, so that a step added with a lower number
      // than one already applied (work developed side by side) still runs.
      const done = new Set(await appliedSteps(client));
      for (const step of [...CATALOG_STEPS].sort((a, b) => a.version - b.version)) {
        if (done.has(step.version)) continue;
        await client.query(step.sql);
        await client.query(
          'INSERT INTO shardctl.schema_version (version, description, shardctl_version) VALUES ($1, $2, $3)',
          [step.version, step.description, SHARDCTL_VERSION],
        );
        applied.push(step.version);
      }
    });
  } finally {
    await client
      .query('SELECT pg_advisory_unlock($1::int4, $2::int4)', [ADVISORY_NAMESPACE, LockKey.catalogSchema])
      .catch(() => undefined);
  }
  return applied;
}
