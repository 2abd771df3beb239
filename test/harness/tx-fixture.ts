import type { TestCluster } from './cluster.js';

/** Tables of the transaction tests: tenant accounts, a per-transaction log, and a reference table. */
export interface TxDb {
  accounts: { tenant_id: string; balance: string };
  transfer_log: { tenant_id: string; txno: number; delta: string };
  plans: { id: string; name: string; price: string };
}

/**
 * Creates `accounts` (one row per tenant), `transfer_log` (one row per tenant and transaction, so a
 * transaction's parts can be matched across shards) and the reference table `plans` on every shard.
 */
export async function applyTxSchema(cluster: TestCluster): Promise<void> {
  await Promise.all(
    cluster.urls.map((_, i) =>
      cluster.sql(
        i,
        `CREATE TABLE accounts (tenant_id bigint PRIMARY KEY, balance bigint NOT NULL);
         CREATE TABLE transfer_log (tenant_id bigint NOT NULL, txno int NOT NULL, delta bigint NOT NULL, PRIMARY KEY (tenant_id, txno));
         CREATE TABLE plans (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10, 2) NOT NULL);
         INSERT INTO plans VALUES (1, 'free', 0), (2, 'team', 12.50), (3, 'pro', 49.99);`,
      ),
    ),
  );
}

/** Opens accounts for tenants with `balance` each, on the shard the modulo rule names (tenant % shards). */
export async function openAccounts(cluster: TestCluster, tenants: number[], balance: number): Promise<void> {
  const n = cluster.urls.length;
  for (const t of tenants) await cluster.sql(t % n, 'INSERT INTO accounts VALUES ($1, $2)', [t, balance]);
}

/** Balances of every account on every shard, by tenant (a tenant on two shards appears twice: a bug). */
export async function balances(cluster: TestCluster): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (let i = 0; i < cluster.urls.length; i++)
    for (const r of await cluster.sql<{ t: string; b: string }>(i, 'SELECT tenant_id AS t, balance AS b FROM accounts'))
      out.set(Number(r.t), (out.get(Number(r.t)) ?? 0) + Number(r.b));
  return out;
}

/** Transaction numbers logged on each shard. */
export async function loggedTxnos(cluster: TestCluster): Promise<Set<number>[]> {
  return Promise.all(
    cluster.urls.map(
      async (_, i) =>
        new Set((await cluster.sql<{ n: number }>(i, 'SELECT DISTINCT txno AS n FROM transfer_log')).map((r) => r.n)),
    ),
  );
}

/** shardctl transactions left prepared in the cluster's databases. */
export async function preparedGids(cluster: TestCluster): Promise<string[]> {
  const all = await Promise.all(
    cluster.urls.map((_, i) =>
      cluster.sql<{ gid: string }>(
        i,
        "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE 'shardctl\\_%'",
      ),
    ),
  );
  return all.flat().map((r) => r.gid);
}
