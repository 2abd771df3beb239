import type { TestCluster } from './cluster.js';
import type { WriterReport } from './writer.js';

/** shardctl's replication objects and change-log triggers left on a shard (empty when clean). */
export async function replicationObjects(cluster: TestCluster, shard: number): Promise<string[]> {
  const rows = await cluster.sql<{ o: string }>(
    shard,
    `SELECT 'slot ' || slot_name AS o FROM pg_replication_slots WHERE slot_name LIKE 'shardctl%' AND database = current_database()
     UNION ALL SELECT 'publication ' || pubname FROM pg_publication WHERE pubname LIKE 'shardctl%'
     UNION ALL SELECT 'subscription ' || subname FROM pg_subscription WHERE subname LIKE 'shardctl%' AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
     UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgname LIKE 'shardctl_track%'`,
  );
  return rows.map((r) => r.o);
}

/**
 * Differences between a writer's acknowledged writes and the `users` rows of its tenants where they
 * live now (empty when every acknowledged write is there exactly as last written).
 */
export async function writerMismatches(
  cluster: TestCluster,
  report: WriterReport,
  where: (tenant: number) => number,
): Promise<string[]> {
  const bad: string[] = [];
  const byTenant = new Map<number, [number, string | null][]>();
  for (const [k, v] of report.model) {
    const [t, id] = k.split(':').map(Number) as [number, number];
    if (!byTenant.has(t)) byTenant.set(t, []);
    byTenant.get(t)!.push([id, v]);
  }
  for (const [t, rows] of byTenant) {
    const have = new Map(
      (
        await cluster.sql<{ id: string; name: string }>(
          where(t),
          'SELECT id::text, name FROM users WHERE tenant_id = $1 AND id >= 100000',
          [t],
        )
      ).map((r) => [Number(r.id), r.name]),
    );
    for (const [id, name] of rows) {
      if (name === null && have.has(id)) bad.push(`tenant ${t} user ${id}: deleted but present`);
      if (name !== null && have.get(id) !== name)
        bad.push(`tenant ${t} user ${id}: expected ${name}, found ${have.get(id) ?? 'nothing'}`);
    }
    const known = new Set(rows.map(([id]) => id));
    for (const id of have.keys()) if (!known.has(id)) bad.push(`tenant ${t} user ${id}: never written`);
  }
  return bad;
}
