// npm run bench -- migrate
// 8 shards (8 databases on 4 embedded servers: the machine has 2 cores), 10 migrations including an
// index build on a table of 200,000 rows. In the same run, each on fresh databases:
//   (a) the files applied shard after shard with plain pg,
//   (b) all shards at once with plain pg, no bookkeeping,
//   (c) shardctl migrate.
// Targets: (c) at most 1.10x (b); shardctl's own overhead under 10 ms per migration per shard.
import { mkdtemp, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadShardMap, migrateShards } from '../dist/index.js';
import { startBenchCluster } from './_cluster.mjs';

const MIGRATIONS = [
  [
    '0001_accounts',
    'CREATE TABLE accounts (tenant_id bigint NOT NULL, id bigint NOT NULL, name text, email text, created_at timestamptz DEFAULT now(), PRIMARY KEY (tenant_id, id));',
  ],
  [
    '0002_fill_accounts',
    "INSERT INTO accounts (tenant_id, id, name, email) SELECT g % 500, g, 'name ' || g, 'u' || g || '@x' FROM generate_series(1, 200000) g;",
  ],
  ['0003_accounts_email_idx', 'CREATE INDEX accounts_email_idx ON accounts (email);'],
  [
    '0004_projects',
    'CREATE TABLE projects (tenant_id bigint NOT NULL, id bigint NOT NULL, account_id bigint, title text, PRIMARY KEY (tenant_id, id));',
  ],
  [
    '0005_projects_fk',
    'ALTER TABLE projects ADD FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id);',
  ],
  ['0006_accounts_status', "ALTER TABLE accounts ADD COLUMN status text NOT NULL DEFAULT 'active';"],
  [
    '0007_audit',
    'CREATE TABLE audit (tenant_id bigint NOT NULL, at timestamptz NOT NULL, what text, PRIMARY KEY (tenant_id, at));',
  ],
  ['0008_view', "CREATE VIEW active_accounts AS SELECT * FROM accounts WHERE status = 'active';"],
  [
    '0009_function',
    "CREATE FUNCTION account_label(a accounts) RETURNS text LANGUAGE sql AS $$ SELECT a.name || ' <' || a.email || '>' $$;",
  ],
  ['0010_name_idx', '-- shardctl:no-transaction\nCREATE INDEX CONCURRENTLY accounts_name_idx ON accounts (name);'],
];

export default async function bench() {
  const servers = await startBenchCluster({ shards: 4 });
  try {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'shardctl-bench-migrate-'));
    const folder = path.join(dir, 'migrations');
    await mkdir(folder);
    for (const [name, sql] of MIGRATIONS) await writeFile(path.join(folder, `${name}.sql`), sql + '\n');
    const admin = async (i, sql) => {
      const c = new pg.Client({ connectionString: servers.urls[i % 4].replace(/\/bench$/, '/postgres') });
      await c.connect();
      await c.query(sql);
      await c.end();
    };
    const urls = {};
    for (const v of ['a', 'b', 'c']) {
      urls[v] = [];
      for (let i = 0; i < 8; i++) {
        await admin(i, `CREATE DATABASE ${v}_${i}`);
        urls[v].push(servers.urls[i % 4].replace(/\/bench$/, `/${v}_${i}`));
      }
    }
    const plain = async (url) => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      for (const [, sql] of MIGRATIONS) {
        if (sql.includes('no-transaction')) await c.query(sql);
        else {
          await c.query('BEGIN');
          await c.query(sql);
          await c.query('COMMIT');
        }
      }
      await c.end();
    };
    let t0 = performance.now();
    for (const u of urls.a) await plain(u);
    const a = (performance.now() - t0) / 1000;
    t0 = performance.now();
    await Promise.all(urls.b.map(plain));
    const b = (performance.now() - t0) / 1000;
    const yaml = [
      'version: 1',
      'shardKey: { column: tenant_id, type: bigint }',
      'placement: { strategy: modulo }',
      'shards:',
      ...urls.c.flatMap((u, i) => [`  - name: shard-${i}`, `    url: ${u}`]),
      `migrations: ${JSON.stringify(folder)}`,
      '',
    ].join('\n');
    await writeFile(path.join(dir, 'shards.yaml'), yaml);
    const map = await loadShardMap(path.join(dir, 'shards.yaml'));
    t0 = performance.now();
    const results = await migrateShards(map);
    const c = (performance.now() - t0) / 1000;
    if (!results.every((r) => r.status === 'ok' && r.value.status === 'applied'))
      throw new Error('shardctl migrate did not apply everything');
    const overheadMs = ((c - b) * 1000) / (MIGRATIONS.length * 8);
    console.log(`8 shards, ${MIGRATIONS.length} migrations (200,000-row table, two index builds, one CONCURRENTLY):`);
    console.log(`  (a) plain pg, shard after shard:  ${a.toFixed(2)} s`);
    console.log(`  (b) plain pg, all shards at once: ${b.toFixed(2)} s`);
    console.log(
      `  (c) shardctl migrate:             ${c.toFixed(2)} s  -> ${(c / b).toFixed(2)}x (b) (target <= 1.10x), ${(c / a).toFixed(2)}x (a)`,
    );
    console.log(`  shardctl overhead: ${overheadMs.toFixed(1)} ms per migration per shard (target < 10 ms)`);
  } finally {
    await servers.stop();
  }
}
