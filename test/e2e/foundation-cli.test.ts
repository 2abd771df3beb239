import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTestCluster, serverAdminUrls, testTempDir, type TestCluster } from '../harness/cluster.js';
import { runCli } from '../harness/run-cli.js';

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function freePortPair(): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if ((await bindable(port)) && (await bindable(port + 1))) return port;
  }
  throw new Error('no two free consecutive ports');
}

let dir: string;

/** A process that exists and is not a zombie (a stopped postmaster may wait to be reaped by init). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}
let cluster: TestCluster;
const head = 'version: 1\nshardKey: { column: tenant_id, type: bigint }\nplacement: { strategy: modulo }\n';

async function mapFile(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

beforeAll(async () => {
  dir = await testTempDir('shardctl-e2e-');
  cluster = await createTestCluster({ shards: 2 });
});
afterAll(async () => {
  await cluster?.drop();
  await rm(dir, { recursive: true, force: true });
});

describe('bad shard maps exit 2 with file:line:column', () => {
  const cases: [string, string, RegExp][] = [
    ['malformed YAML', 'version: 1\nshards:\n  - name: a\n   url: [x\n', /bad\.yaml:\d+:\d+: malformed YAML/],
    [
      'unknown key',
      head + 'shards:\n  - name: a\n    url: postgres://u:p@h/d\n    port: 5432\n',
      /bad\.yaml:7:5: shards\[0\]\.port: unknown key "port"/,
    ],
    [
      'wrong version',
      head.replace('version: 1', 'version: 9') + 'shards:\n  - name: a\n    url: postgres://u:p@h/d\n',
      /bad\.yaml:1:10: version: unsupported version 9/,
    ],
    ['no shards', head + 'shards: []\n', /bad\.yaml:4:9: shards: lists no shards/],
    [
      'duplicate names',
      head + 'shards:\n  - name: a\n    url: postgres://u:p@h1/d\n  - name: a\n    url: postgres://u:p@h2/d\n',
      /bad\.yaml:7:11: shards\[1\]\.name: duplicate shard name "a"/,
    ],
    [
      'bucket gap',
      'version: 1\nshardKey: { column: t }\nplacement: { strategy: hash, buckets: 10 }\nshards:\n  - name: a\n    url: postgres://u:p@h1/d\n    buckets: 0-3\n  - name: b\n    url: postgres://u:p@h2/d\n    buckets: 6-9\n',
      /bad\.yaml:10:14: shards\[1\]\.buckets: gap: buckets 4-5 belong to no shard/,
    ],
    [
      'bucket overlap',
      'version: 1\nshardKey: { column: t }\nplacement: { strategy: hash, buckets: 10 }\nshards:\n  - name: a\n    url: postgres://u:p@h1/d\n    buckets: 0-6\n  - name: b\n    url: postgres://u:p@h2/d\n    buckets: 5-9\n',
      /bad\.yaml:10:14: shards\[1\]\.buckets: overlap: buckets 5-6 are owned by a and b/,
    ],
    [
      'modulo with a text key',
      head.replace('type: bigint', 'type: text') + 'shards:\n  - name: a\n    url: postgres://u:p@h/d\n',
      /bad\.yaml:2:38: shardKey\.type: the modulo strategy needs an integer shard key/,
    ],
    [
      'unset env var',
      head + 'shards:\n  - name: a\n    url: postgres://u:${NOPE_PW}@h/d\n',
      /bad\.yaml:6:10: shards\[0\]\.url: environment variable NOPE_PW is not set/,
    ],
  ];
  for (const [name, text, message] of cases) {
    it(name, async () => {
      const file = await mapFile('bad.yaml', text);
      const r = await runCli(['-c', file, 'validate'], { env: { NOPE_PW: undefined } });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(r.stdout).toBe('');
    });
  }

  it('a missing map file', async () => {
    const r = await runCli(['-c', path.join(dir, 'nope.yaml'), 'shards']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/nope\.yaml: file not found/);
  });

  it('prints JSON errors with --json', async () => {
    const file = await mapFile('bad-json.yaml', head + 'shards: []\n');
    const r = await runCli(['validate', '--json', '-c', file]);
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ ok: false, error: 'CONFIG_INVALID' });
    expect(doc.details[0]).toMatchObject({ line: 4, column: 9, path: 'shards' });
  });
});

describe('locate', () => {
  it('answers index 1 and index 0 on a two-shard modulo map, offline', async () => {
    const file = await mapFile(
      'two.yaml',
      head +
        'shards:\n  - name: shard-0\n    url: postgres://u:p@127.0.0.1:1/d\n  - name: shard-1\n    url: postgres://u:p@127.0.0.1:2/d\n',
    );
    const r = await runCli(['-c', file, 'locate', '123', '456', '-5', '--offline', '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.offline).toBe(true);
    expect(doc.locations.map((l: { tenant: string; shard: string }) => [l.tenant, l.shard])).toEqual([
      ['123', 'shard-1'],
      ['456', 'shard-0'],
      ['-5', 'shard-1'],
    ]);
    const table = await runCli(['-c', file, 'locate', '123', '--offline']);
    expect(table.stdout).toMatch(/123\s+│ shard-1/);
    expect(table.stderr).toMatch(/offline: computed from the map alone/);
  });

  it('refuses a tenant that is not an integer, and a tenant that looks like SQL', async () => {
    for (const bad of ['abc', '1; drop table users']) {
      const r = await runCli(['-c', cluster.mapFile, 'locate', bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('is not an integer, but the shard key is bigint');
    }
  });

  it('reads directory overrides from the catalog', async () => {
    await cluster.sql(0, 'CREATE SCHEMA shardctl');
    await cluster.sql(0, 'DROP SCHEMA shardctl');
    const before = await runCli(['-c', cluster.mapFile, 'locate', '10', '--json']);
    expect(before.code).toBe(0);
    expect(JSON.parse(before.stdout).locations[0]).toMatchObject({ shard: 'shard-0', override: false });
    // Write the directory as a move would, then locate again.
    const { ensureCatalogSchema, setPlacement, ShardPools } = await import('../../src/index.js');
    const pools = await ShardPools.open(cluster.map);
    await pools.withShard('shard-0', async (c) => {
      await ensureCatalogSchema(c);
      await setPlacement(c, '10', 'shard-1', { ruleShard: 'shard-0' });
    });
    await pools.close();
    const after = await runCli(['-c', cluster.mapFile, 'locate', '10', '11']);
    expect(after.code).toBe(0);
    expect(after.stdout).toMatch(/10\s+│ shard-1 │ shard-0 │ yes/);
    expect(after.stdout).toMatch(/11\s+│ shard-1 │ shard-1 │ no/);
  });
});

// An external server may trust its clients: a URL without a password has nothing to hide.
const trustingServer = inject('pgExternal') && !new URL(inject('pgAdminUrls')[0]!).password;

describe('shards', () => {
  it.skipIf(trustingServer)('lists shards with passwords hidden', async () => {
    const r = await runCli(['shards', '-c', cluster.mapFile, '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.shards).toHaveLength(2);
    expect(doc.shards[0].url).toMatch(/^postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\//);
    const password = new URL(cluster.urls[0]!).password;
    expect(r.stdout + r.stderr).not.toContain(password);
  });

  it('--check reports every shard reachable', async () => {
    const r = await runCli(['-c', cluster.mapFile, 'shards', '--check']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/all 2 shards reachable/);
    // The version the server reports (the suite runs on every supported major).
    const [row] = await cluster.sql<{ v: string }>(0, "SELECT current_setting('server_version') AS v");
    const version = row!.v.split(' ')[0]!.replace(/\./g, '\\.');
    expect(r.stdout).toMatch(new RegExp(`shard-0 .* yes .* ms .* ${version}`));
  });

  it('--check names a refused shard, a timed-out shard and a wrong password, within the timeout, never printing the password', async () => {
    // A server that accepts TCP connections and never answers: the client must time out.
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as net.AddressInfo).port;
    const good = new URL(cluster.urls[0]!);
    const wrong = new URL(cluster.urls[1]!);
    wrong.password = 'Wr0ngPassw0rd';
    const file = await mapFile(
      'unreachable.yaml',
      head +
        `shards:\n  - name: good\n    url: ${good}\n  - name: refused\n    url: postgres://u:Sekr1tPw@127.0.0.1:1/d\n  - name: silent\n    url: postgres://u:Sekr1tPw@127.0.0.1:${silentPort}/d\n  - name: badpw\n    url: ${wrong}\n`,
    );
    const start = Date.now();
    const r = await runCli(['-c', file, 'shards', '--check', '--timeout', '1500', '--json']);
    const elapsed = Date.now() - start;
    silent.close();
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout);
    const by = Object.fromEntries(doc.shards.map((s: { name: string }) => [s.name, s]));
    expect(by.good.reachable).toBe(true);
    expect(by.refused.error).toMatch(/shard refused: cannot connect: connection refused/);
    expect(by.silent.error).toMatch(/shard silent: .*timed out/);
    // (a trusting external server lets any password in)
    if (!trustingServer) expect(by.badpw.error).toMatch(/shard badpw: .*password authentication failed/);
    expect(r.stdout + r.stderr).not.toMatch(/Sekr1tPw|Wr0ngPassw0rd/);
    expect(elapsed).toBeLessThan(15_000);
  });
});

describe('query refusals give a next step that is true', () => {
  it('a write is refused with the write hint, on every path (--tenant and --shard too)', async () => {
    for (const extra of [[], ['--tenant', '5'], ['--shard', 'shard-1']]) {
      const r = await runCli(['-c', cluster.mapFile, 'query', 'DELETE FROM invoices', ...extra]);
      expect(r.code).toBe(7);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/refused: DELETE is not a SELECT: shardctl query only reads \(nothing was sent\)/);
      expect(r.stderr).toContain('shardctl query only reads, with --tenant and --shard too');
      expect(r.stderr).toContain('shardctl migrate create NAME');
      expect(r.stderr).not.toContain('answer it on one shard');
    }
    const locks = await runCli(['-c', cluster.mapFile, 'query', 'SELECT 1 FROM users FOR UPDATE', '--json']);
    expect(locks.code).toBe(7);
    expect(JSON.parse(locks.stdout)).toMatchObject({ ok: false, error: 'REFUSED' });
    expect(locks.stdout).toContain('shardctl query only reads');
  });

  it('a read that cannot be merged keeps the read hint', async () => {
    const r = await runCli([
      '-c',
      cluster.mapFile,
      'query',
      'SELECT count(*) FROM users u WHERE EXISTS (SELECT 1 FROM users v WHERE v.email = u.email AND v.id <> u.id)',
    ]);
    expect(r.code).toBe(7);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/refused: EXISTS sub-query correlated on a column other than the shard key/);
    expect(r.stderr).toContain('answer it on one shard with --tenant ID or --shard NAME, or rewrite the query');
    expect(r.stderr).not.toContain('only reads');
  });
});

describe('dev up / status / down', () => {
  it('starts real servers, is idempotent, and leaves no process behind', async () => {
    const devDir = await testTempDir('shardctl-dev-');
    // Two consecutive free ports, below the kernel's ephemeral range (busy with the suite's connections).
    const port = await freePortPair();
    const cfg = path.join(devDir, 'shards.dev.yaml');
    const args = [
      'dev',
      'up',
      '--shards',
      '2',
      '--dir',
      path.join(devDir, 'servers'),
      '--port',
      String(port),
      '--out',
      cfg,
    ];
    try {
      const up = await runCli(args, { cwd: devDir, timeoutMs: 120_000 });
      expect(up.stderr + up.stdout).not.toMatch(/internal error/);
      expect(up.code).toBe(0);
      // The written map is a text file: it ends with exactly one newline.
      expect(readFileSync(cfg, 'utf8')).toMatch(/\[plans\]\n$/);
      expect(up.stdout).toMatch(/shard-0 .* created/);
      const again = await runCli([...args, '--json'], { cwd: devDir });
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout).servers.map((s: { action: string }) => s.action)).toEqual([
        'already running',
        'already running',
      ]);
      const check = await runCli(['-c', cfg, 'shards', '--check', '--json']);
      expect(check.code).toBe(0);
      expect(JSON.parse(check.stdout).shards.map((s: { reachable: boolean }) => s.reachable)).toEqual([true, true]);
      const status = await runCli(['dev', 'status', '--dir', path.join(devDir, 'servers'), '--json']);
      const pids: number[] = JSON.parse(status.stdout).servers.map((s: { pid: number }) => s.pid);
      expect(pids).toHaveLength(2);
      const down = await runCli(['dev', 'down', '--dir', path.join(devDir, 'servers')]);
      expect(down.code).toBe(0);
      for (const pid of pids) expect(alive(pid), `postmaster ${pid} still runs`).toBe(false);
    } finally {
      await runCli(['dev', 'down', '--dir', path.join(devDir, 'servers')]);
      await rm(devDir, { recursive: true, force: true });
    }
  });
});

it('uses the suite servers', () => {
  expect(serverAdminUrls().length).toBeGreaterThan(0);
});
