import { spawn } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CATALOG_STEPS,
  CATALOG_VERSION,
  checkShards,
  createRouter,
  ensureCatalogSchema,
  locateTenants,
  readCatalogVersion,
  setPlacement,
  ShardPools,
} from '../../src/index.js';
import { pollUntil } from '../../src/db/poll.js';
import { addFence, ensureFenceTriggers } from '../../src/move/fence.js';
import { fenceTarget, isFenceError } from '../../src/router/fence-error.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await createTestCluster({ shards: 3 });
  for (let i = 0; i < 3; i++) {
    await cluster.sql(
      i,
      'CREATE TABLE users (tenant_id bigint NOT NULL, id bigint NOT NULL, email text, PRIMARY KEY (tenant_id, id))',
    );
  }
});
afterAll(() => cluster.drop());

describe('catalog schema', () => {
  it('is not created by read-only commands', async () => {
    await locateTenants(cluster.map, ['1', '2']);
    const health = await checkShards(cluster.map);
    expect(health.every((h) => h.status === 'ok')).toBe(true);
    for (let i = 0; i < 3; i++) {
      expect(await cluster.sql(i, "SELECT 1 FROM pg_namespace WHERE nspname = 'shardctl'")).toEqual([]);
    }
  });

  it('is created once when many processes race to create it', async () => {
    const pools = await Promise.all(Array.from({ length: 6 }, () => ShardPools.open(cluster.map, { maxPerShard: 1 })));
    try {
      const applied = await Promise.all(pools.map((p) => p.withShard('shard-2', (c) => ensureCatalogSchema(c))));
      expect(applied.flat().sort((a, b) => a - b)).toEqual(CATALOG_STEPS.map((s) => s.version).sort((a, b) => a - b));
      expect(await pools[0]!.withShard('shard-2', (c) => readCatalogVersion(c))).toBe(CATALOG_VERSION);
    } finally {
      await Promise.all(pools.map((p) => p.close()));
    }
  });
});

describe('router', () => {
  it('locates by rule, honours the directory, and re-reads it when its version changes', async () => {
    const router = await createRouter(cluster.map, { directoryTtlMs: 0 });
    const pools = await ShardPools.open(cluster.map);
    try {
      expect(router.locate(7)).toEqual({ tenant: '7', shard: 'shard-1', ruleShard: 'shard-1', override: false });
      await pools.withShard('shard-0', async (c) => {
        await ensureCatalogSchema(c);
        await setPlacement(c, '7', 'shard-2', { ruleShard: 'shard-1' });
      });
      await router.refresh();
      expect(router.locate('7')).toEqual({ tenant: '7', shard: 'shard-2', ruleShard: 'shard-1', override: true });
      const v = router.directoryVersion;
      // Moving it back to the rule's shard removes the entry: the directory only holds exceptions.
      await pools.withShard('shard-0', (c) => setPlacement(c, '7', 'shard-1', { ruleShard: 'shard-1' }));
      await router.refresh();
      expect(router.directoryVersion).toBeGreaterThan(v);
      expect(router.locate(7n).override).toBe(false);
      expect(
        await pools.withShard(
          'shard-0',
          async (c) => (await c.query('SELECT count(*)::int AS n FROM shardctl.placements')).rows[0].n,
        ),
      ).toBe(0);
    } finally {
      await pools.close();
      await router.close();
    }
  });

  it('shares concurrent refreshes, each one reading a directory newer than its call', async () => {
    // Without notices: this is the polling path (a notice's read would open a second connection).
    const router = await createRouter(cluster.map, { directoryTtlMs: 60_000, listen: false });
    const pools = await ShardPools.open(cluster.map);
    try {
      await pools.withShard('shard-0', async (c) => {
        await ensureCatalogSchema(c);
        await setPlacement(c, '8', 'shard-0', { ruleShard: 'shard-2' });
      });
      // Twenty writers rejected at once: one read runs, the others share the next one.
      await Promise.all(Array.from({ length: 20 }, () => router.refresh()));
      expect(router.locate(8).shard).toBe('shard-0');
      expect(router.pools.pool('shard-0').totalCount).toBe(1);
      // A refresh called while another runs, after a change committed meanwhile, sees the change.
      const running = router.refresh();
      await pools.withShard('shard-0', (c) => setPlacement(c, '8', 'shard-1', { ruleShard: 'shard-2' }));
      await router.refresh();
      expect(router.locate(8).shard).toBe('shard-1');
      await running;
    } finally {
      await pools.close();
      await router.close();
    }
  });

  it('re-reads the directory as soon as a change commits, without waiting for its TTL', async () => {
    // An hour's TTL and no refresh(): only the catalog's notice can bring the change.
    const router = await createRouter(cluster.map, { directoryTtlMs: 3_600_000 });
    const pools = await ShardPools.open(cluster.map);
    try {
      await pollUntil(() => router.listening, { timeoutMs: 10_000, intervalMs: 20, reason: 'the router to listen' });
      await pools.withShard('shard-0', async (c) => {
        await ensureCatalogSchema(c);
        await setPlacement(c, '10', 'shard-2', { ruleShard: 'shard-1' });
      });
      await pollUntil(() => router.locate(10).shard === 'shard-2', {
        timeoutMs: 10_000,
        intervalMs: 5,
        reason: 'the router to see the new placement',
      });
      await pools.withShard('shard-0', (c) => setPlacement(c, '10', 'shard-1', { ruleShard: 'shard-1' }));
      await pollUntil(() => router.locate(10).shard === 'shard-1', {
        timeoutMs: 10_000,
        intervalMs: 5,
        reason: 'the router to see the entry removed',
      });
    } finally {
      await pools.close();
      await router.close();
    }
  });

  it('listens again after its session is lost, and reads what it missed meanwhile', async () => {
    const router = await createRouter(cluster.map, { directoryTtlMs: 3_600_000 });
    const listeners = () =>
      cluster.sql<{ pid: number }>(
        0,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'shardctl router'",
      );
    try {
      await pollUntil(() => router.listening, { timeoutMs: 10_000, intervalMs: 20, reason: 'the router to listen' });
      const [first] = await listeners();
      expect(first).toBeDefined();
      await cluster.sql(0, 'SELECT pg_terminate_backend($1)', [first!.pid]);
      await pollUntil(() => !router.listening, { timeoutMs: 10_000, intervalMs: 5, reason: 'the session to drop' });
      // Committed while nobody listens: the notice is lost, the re-read on reconnecting finds it.
      await cluster.sql(0, "INSERT INTO shardctl.placements (tenant, shard) VALUES ('11', 'shard-0')");
      await pollUntil(() => router.listening, { timeoutMs: 10_000, intervalMs: 20, reason: 'the router to listen' });
      const again = await listeners();
      expect(again.map((r) => r.pid)).not.toContain(first!.pid);
      await pollUntil(() => router.locate(11).shard === 'shard-0', {
        timeoutMs: 10_000,
        intervalMs: 5,
        reason: 'the router to read the missed change',
      });
    } finally {
      await router.close();
    }
    // close() ends the session.
    await pollUntil(async () => (await listeners()).length === 0, {
      timeoutMs: 10_000,
      intervalMs: 20,
      reason: 'the session to end',
    });
  });

  it('lets the process go on after close(): a program awaiting close() then runs its next line', async () => {
    // A child process whose only open handles are the router's: once close() resolves, it must still
    // run what follows (the LISTEN session is referenced again while it ends).
    const dist = pathToFileURL(path.resolve(import.meta.dirname, '..', '..', 'dist', 'index.js')).href;
    const script = `const { createRouter } = await import(${JSON.stringify(dist)});
      const router = await createRouter(${JSON.stringify(cluster.mapFile)});
      while (!router.listening) await new Promise((r) => setTimeout(r, 10));
      await router.close();
      console.log('after close');`;
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.on('error', reject);
      child.on('close', () => resolve(text));
    });
    expect(out.trim()).toBe('after close');
  });

  it('given a fence error, opens connections to the shard the tenant moves to while it refreshes', async () => {
    // trust-map: no scan of every shard's rows on opening, so the router holds no connection to shard-2.
    const router = await createRouter(cluster.map, { directoryTtlMs: 3_600_000, unrecordedRule: 'trust-map' });
    try {
      // The catalog schema and fence triggers on shard-1, and a fence naming shard-2.
      await router.pools.withShard('shard-1', async (c) => {
        await ensureFenceTriggers(c, [{ table: 'public.users', keyColumn: 'tenant_id' }], 5000);
        await addFence(c, { tenant: '13', moveId: null, target: 'shard-2', reason: 'moving' });
      });
      // Three writers rejected at once on shard-1: the app holds three connections there.
      const errors = await Promise.all(
        [1, 2, 3].map((id) =>
          router.pools
            .pool('shard-1')
            .query('INSERT INTO users (tenant_id, id) VALUES (13, $1)', [id])
            .then(
              () => undefined,
              (e: unknown) => e,
            ),
        ),
      );
      expect(errors.every((e) => isFenceError(e))).toBe(true);
      expect(fenceTarget(errors[0])).toBe('shard-2');
      const held = router.pools.pool('shard-1').totalCount;
      expect(router.pools.pool('shard-2').totalCount).toBe(0);
      await router.refresh(errors[0]);
      await pollUntil(() => router.pools.pool('shard-2').totalCount >= held, {
        timeoutMs: 10_000,
        intervalMs: 5,
        reason: 'connections to shard-2',
      });
      // Any other error warms nothing.
      await router.refresh(new Error('other'));
      expect(fenceTarget(new Error('shardctl: tenant 1 is fenced on this shard'))).toBeUndefined();
    } finally {
      await router.pools.withShard('shard-1', (c) => c.query("DELETE FROM shardctl.fences WHERE tenant = '13'"));
      await router.close();
    }
  });

  it('gives each tenant a Kysely bound to its shard', async () => {
    const router = await createRouter(cluster.map);
    try {
      for (const t of [3, 4, 5]) {
        await router
          .db<{ users: { tenant_id: string; id: string; email: string } }>(t)
          .insertInto('users')
          .values({ tenant_id: String(t), id: '1', email: `a@${t}` })
          .execute();
      }
      expect(await cluster.sql(0, 'SELECT tenant_id::int AS t FROM users')).toEqual([{ t: 3 }]);
      expect(await cluster.sql(1, 'SELECT tenant_id::int AS t FROM users')).toEqual([{ t: 4 }]);
      expect(await cluster.sql(2, 'SELECT tenant_id::int AS t FROM users')).toEqual([{ t: 5 }]);
      const rows = await router
        .shard<{ users: { email: string } }>('shard-2')
        .selectFrom('users')
        .select('email')
        .execute();
      expect(rows).toEqual([{ email: 'a@5' }]);
      expect(() => router.shard('nope')).toThrow(/unknown shard "nope"/);
    } finally {
      await router.close();
    }
  });

  it('refuses an offline router a connection', async () => {
    const router = await createRouter(cluster.map, { offline: true });
    expect(router.locate(2).shard).toBe('shard-2');
    expect(() => router.db(2)).toThrow(/offline/);
  });
});

describe('shards --check', () => {
  it('reports health of every shard', async () => {
    await cluster.sql(0, 'ANALYZE users');
    const results = await checkShards(cluster.map, { timeoutMs: 5000 });
    expect(results.map((r) => r.status)).toEqual(['ok', 'ok', 'ok']);
    const first = results[0]!;
    if (first.status !== 'ok') throw new Error('unreachable');
    expect(first.value.serverVersion).toMatch(/^\d+\.\d+/);
    expect(first.value.tenantTables).toBe(1);
    expect(first.value.catalogVersion).toBe(CATALOG_VERSION);
    expect(first.value.databaseBytes).toBeGreaterThan(1_000_000);
  });
});
