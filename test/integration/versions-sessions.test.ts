import type { PoolClient } from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ShardPools, type ShardMap } from '../../src/index.js';
import { pollUntil } from '../../src/db/poll.js';
import { unsupportedServer } from '../../src/db/server-version.js';
import { withTransaction } from '../../src/db/transaction.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { runCli } from '../harness/run-cli.js';

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await createTestCluster({ shards: 2 });
  await Promise.all(
    [0, 1].map((i) =>
      cluster.sql(i, 'CREATE TABLE events (tenant_id bigint NOT NULL, id bigint, PRIMARY KEY (tenant_id, id))'),
    ),
  );
});
afterAll(() => cluster.drop());

const SETTINGS_SQL = `SELECT name, setting FROM pg_settings
   WHERE name IN ('idle_in_transaction_session_timeout', 'statement_timeout', 'default_transaction_read_only', 'work_mem')`;

async function sessionSettings(pools: ShardPools, shard: string): Promise<Record<string, string>> {
  const rows = await pools.withShard(shard, (c) => c.query<{ name: string; setting: string }>(SETTINGS_SQL));
  return Object.fromEntries(rows.rows.map((r) => [r.name, r.setting]));
}

const pid = async (c: PoolClient) => (await c.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;

/** Whether a backend of this pid still exists, seen from another session. */
async function backendAlive(pid: number): Promise<boolean> {
  const r = await cluster.sql<{ n: number }>(0, 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [
    pid,
  ]);
  return r[0]!.n > 0;
}

describe('every session shardctl opens', () => {
  it('has idle_in_transaction_session_timeout (60 s by default) and the pools statement_timeout', async () => {
    const plain = await ShardPools.open(cluster.map);
    const timed = await ShardPools.open(cluster.map, { statementTimeoutMs: 4321, readOnly: true });
    try {
      const a = await sessionSettings(plain, 'shard-0');
      expect(a.idle_in_transaction_session_timeout).toBe('60000');
      const b = await sessionSettings(timed, 'shard-1');
      expect(b).toMatchObject({
        idle_in_transaction_session_timeout: '60000',
        statement_timeout: '4321',
        default_transaction_read_only: 'on',
      });
    } finally {
      await Promise.all([plain.close(), timed.close()]);
    }
  });

  it("keeps the URL's own options, which win over shardctl's defaults", async () => {
    const url = new URL(cluster.urls[0]!);
    url.searchParams.set('options', '-c work_mem=7MB -c idle_in_transaction_session_timeout=90000');
    const map: ShardMap = {
      ...cluster.map,
      shards: cluster.map.shards.map((s, i) => (i === 0 ? { ...s, url: url.toString() } : s)),
    };
    const pools = await ShardPools.open(map);
    try {
      expect(await sessionSettings(pools, 'shard-0')).toMatchObject({
        work_mem: '7168',
        idle_in_transaction_session_timeout: '90000',
      });
    } finally {
      await pools.close();
    }
  });

  it('is ended by the server when it sits idle inside a transaction, unless that transaction lifts the limit', async () => {
    const pools = await ShardPools.open(cluster.map, { idleInTransactionTimeoutMs: 300, maxPerShard: 2 });
    try {
      await pools
        .withShard('shard-0', (stuck) =>
          pools.withShard('shard-0', async (patient) => {
            const stuckPid = await pid(stuck);
            const patientPid = await pid(patient);
            stuck.on('error', () => undefined);
            await stuck.query('BEGIN');
            await stuck.query('SELECT count(*) FROM events');
            // The patient transaction idles at least as long as the stuck one, yet lives on.
            await withTransaction(
              patient,
              async () => {
                await patient.query('SELECT count(*) FROM events');
                await pollUntil(async () => !(await backendAlive(stuckPid)), {
                  timeoutMs: 30_000,
                  intervalMs: 50,
                  reason: 'the server to end the session idle in its transaction',
                });
              },
              { idleInTransactionTimeoutMs: 0 },
            );
            expect(await backendAlive(patientPid)).toBe(true);
            await expect(stuck.query('SELECT 1')).rejects.toThrow(/idle-in-transaction timeout|terminat|connection/i);
          }),
        )
        .catch((e: Error) => {
          // The stuck session's own end surfaces when its client is released: only that is expected.
          if (!/idle-in-transaction|terminat|connection/i.test(e.message)) throw e;
        });
    } finally {
      await pools.close();
    }
  });

  it('lifts the limit for sessions used together (one waits in a transaction for another), and restores it', async () => {
    const pools = await ShardPools.open(cluster.map, { maxPerShard: 2 });
    const limit = async (c: PoolClient) =>
      (await c.query<{ s: string }>("SELECT current_setting('idle_in_transaction_session_timeout') AS s")).rows[0]!.s;
    try {
      const pids = await pools.withClients(['shard-0', 'shard-1'], async (clients) => {
        for (const c of clients) expect(await limit(c)).toBe('0');
        return Promise.all(clients.map(pid));
      });
      // The same pooled connections, back with the startup setting.
      await pools.withShard('shard-0', (a) =>
        pools.withShard('shard-0', async (b) => {
          expect([await pid(a), await pid(b)]).toContain(pids[0]);
          expect([await limit(a), await limit(b)]).toEqual(['1min', '1min']);
        }),
      );
    } finally {
      await pools.close();
    }
  });

  it('is opened the same way by the CLI: a query command sees the setting on every shard', async () => {
    // A value each shard's session computes: one row from each shard.
    await cluster.sql(0, 'INSERT INTO events VALUES (2, 1)');
    await cluster.sql(1, 'INSERT INTO events VALUES (1, 1)');
    const r = await runCli([
      '-c',
      cluster.mapFile,
      'query',
      '--json',
      "SELECT tenant_id, current_setting('idle_in_transaction_session_timeout') AS t FROM events ORDER BY tenant_id",
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([
      { tenant_id: 1, t: '1min' },
      { tenant_id: 2, t: '1min' },
    ]);
  });
});

describe('server versions', () => {
  it('reads each shard major once and accepts every supported one', async () => {
    const pools = await ShardPools.open(cluster.map);
    try {
      const majors = await Promise.all(cluster.map.shards.map(async (s) => (await pools.serverVersion(s.name)).major));
      const started = inject('pgMajors');
      if (started.length > 0) expect(majors).toEqual(majors.map((_, i) => started[i % started.length]));
      for (const m of majors) expect(m).toBeGreaterThanOrEqual(15);
    } finally {
      await pools.close();
    }
  });

  it('refuses a server older than 15 by name, version and shard, with a fix', () => {
    const e = unsupportedServer({ num: 140011, major: 14, text: '14.11' }, 'shard-2');
    expect(e?.code).toBe('UNSUPPORTED_SERVER');
    expect(e?.shard).toBe('shard-2');
    expect(e?.message).toBe('shard shard-2 runs PostgreSQL 14.11: shardctl supports PostgreSQL 15 to 18');
    expect(e?.hint).toMatch(/upgrade/);
    expect(unsupportedServer({ num: 150000, major: 15, text: '15.0' }, 'shard-2')).toBeUndefined();
    expect(unsupportedServer({ num: 190000, major: 19, text: '19devel' }, 'shard-2')).toBeUndefined();
  });
});
