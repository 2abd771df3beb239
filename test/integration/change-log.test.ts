import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureCatalogSchema } from '../../src/catalog/catalog-schema.js';
import { ShardPools } from '../../src/index.js';
import { newChangeLogCursor, readChangedKeys } from '../../src/move/change-tracking.js';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';

// The change log of a move read with a cursor: each read adds only what the previous read could not
// see. Log ids are taken at write time and become visible at commit, so "ids above the last one seen"
// would lose a transaction that took its id early and committed late; the cursor must not.
let c: TestCluster;
let pools: ShardPools;
beforeAll(async () => {
  c = await createTestCluster({ shards: 1 });
  pools = await ShardPools.open(c.map);
  await pools.withShard('shard-0', (x) => ensureCatalogSchema(x));
});
afterAll(async () => {
  await pools?.close();
  await c?.drop();
});

const log = (move: number, pk: string | null) =>
  c.sql(0, 'INSERT INTO shardctl.move_changes (move_id, tbl, pk) VALUES ($1, $2, $3::jsonb)', [move, 'public.t', pk]);

/** The keys of the cursor's view, each with its latest log id. */
const keysOf = (seen: Awaited<ReturnType<typeof readChangedKeys>>) =>
  Object.fromEntries(seen.keys.get('public.t') ?? []);

describe('readChangedKeys with a cursor', () => {
  it('reads a transaction that took its log id before a later one and committed after it', async () => {
    const cursor = newChangeLogCursor();
    await pools.withClients(['shard-0', 'shard-0'], async ([early, reader]) => {
      await early!.query('BEGIN');
      await early!.query("INSERT INTO shardctl.move_changes (move_id, tbl, pk) VALUES (1, 'public.t', '{\"id\": 1}')");
      await log(1, '{"id": 2}');
      const first = keysOf(await readChangedKeys(reader!, 1, cursor));
      expect(Object.keys(first)).toEqual(['{"id": 2}']);
      await early!.query('COMMIT');
      const second = keysOf(await readChangedKeys(reader!, 1, cursor));
      expect(Object.keys(second).sort()).toEqual(['{"id": 1}', '{"id": 2}']);
      // The late one's id is the smaller: the view holds it all the same.
      expect(second['{"id": 1}']).toBeLessThan(second['{"id": 2}']!);
      // Equal to a whole read of the log.
      expect(keysOf(await readChangedKeys(reader!, 1))).toEqual(second);
    });
  });

  it('keeps the latest id of a key written again, other moves apart, and a TRUNCATE as truncated', async () => {
    const cursor = newChangeLogCursor();
    await log(2, '{"id": 5}');
    await pools.withShard('shard-0', async (x) => {
      const before = keysOf(await readChangedKeys(x, 2, cursor))['{"id": 5}']!;
      await log(2, '{"id": 5}');
      await log(3, '{"id": 6}');
      const after = await readChangedKeys(x, 2, cursor);
      expect(keysOf(after)['{"id": 5}']).toBeGreaterThan(before);
      expect(Object.keys(keysOf(after))).toEqual(['{"id": 5}']);
      expect(after.truncated).toEqual([]);
      await log(2, null);
      expect((await readChangedKeys(x, 2, cursor)).truncated).toEqual(['public.t']);
    });
  });

  it('reads rows without a transaction id (logged before the log recorded them) on every read', async () => {
    const cursor = newChangeLogCursor();
    await pools.withShard('shard-0', async (x) => {
      expect(keysOf(await readChangedKeys(x, 4, cursor))).toEqual({});
      await c.sql(
        0,
        "INSERT INTO shardctl.move_changes (move_id, tbl, pk, xid) VALUES (4, 'public.t', '{\"id\": 9}', NULL)",
      );
      expect(Object.keys(keysOf(await readChangedKeys(x, 4, cursor)))).toEqual(['{"id": 9}']);
    });
  });
});
