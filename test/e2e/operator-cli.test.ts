import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCluster, type TestCluster } from '../harness/cluster.js';
import { BIN, runCli } from '../harness/run-cli.js';

let cluster: TestCluster;
const LONG_NOTE = `${'a long note that no terminal shows on one line '.repeat(6)}END`;

beforeAll(async () => {
  cluster = await createTestCluster({ shards: 2 });
  // The map's migrations folder is cluster.dir/migrations: the files are written before any command runs.
  const migrations = path.join(cluster.dir, 'migrations');
  await mkdir(migrations, { recursive: true });
  await writeFile(
    path.join(migrations, '0001_create_tenants.sql'),
    'CREATE TABLE tenants (tenant_id bigint PRIMARY KEY, name text NOT NULL);\n',
  );
  await writeFile(
    path.join(migrations, '0002_create_notes.sql'),
    'CREATE TABLE notes (tenant_id bigint NOT NULL, id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id));\n',
  );
});
afterAll(() => cluster?.drop());

const cli = (args: string[], env?: Record<string, string | undefined>) =>
  runCli(['-c', cluster.mapFile, ...args], env ? { env } : {});

describe('migrate status on a fleet with nothing applied', () => {
  it('says nothing is applied and how many files are pending, then the usual line once migrated', async () => {
    const before = await cli(['migrate', 'status']);
    expect(before.stdout).toContain('nothing applied on 2 shards; 2 files pending (latest 0002)');
    expect(before.stdout).not.toMatch(/at none/);
    expect(before.code).toBe(0);
    expect((await cli(['migrate', 'status', '--check'])).code).toBe(4);

    const migrate = await cli(['migrate']);
    expect(migrate.code).toBe(0);
    const after = await cli(['migrate', 'status', '--check']);
    expect(after.stdout).toContain('2 of 2 shards at 0002 (latest file 0002)');
    expect(after.code).toBe(0);

    // tenants 1 (shard-1) and 2 (shard-0) under modulo on two shards
    for (const [shard, tenant] of [
      [1, 1],
      [0, 2],
    ] as const) {
      await cluster.sql(shard, 'INSERT INTO tenants VALUES ($1, $2)', [tenant, `tenant ${tenant}`]);
      await cluster.sql(shard, 'INSERT INTO notes VALUES ($1, 1, $2), ($1, 2, $3)', [tenant, LONG_NOTE, 'short']);
    }
  });
});

describe('query -p', () => {
  const sql = 'SELECT id, body FROM notes WHERE tenant_id = $1 AND id = $2';

  it.each([
    ['before the SQL', ['query', '-p', '1', '-p', '2', sql]],
    ['after the SQL', ['query', sql, '-p', '1', '-p', '2']],
    ['on both sides', ['query', '-p', '1', sql, '-p', '2']],
    ['as --param=', ['query', '--param=1', sql, '--param', '2']],
  ])('takes one value per -p, in order, %s', async (_where, args) => {
    const r = await cli([...args, '--format', 'json']);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([{ id: 2, body: 'short' }]);
    expect(r.code).toBe(0);
  });

  it('a missing parameter is PostgreSQL’s error, not "no query"', async () => {
    const r = await cli(['query', '-p', '1', sql]);
    expect(r.stderr).not.toMatch(/no query/);
    expect(r.code).not.toBe(0);
  });
});

describe('tables that fit the terminal', () => {
  const table = ['query', 'SELECT tenant_id, id, body FROM notes ORDER BY tenant_id, id', '--format', 'table'];

  it('on a terminal, cuts long cells so that every line fits $COLUMNS', async () => {
    const r = await cli(table, { SHARDCTL_TTY: '1', COLUMNS: '60' });
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(60);
    expect(r.stdout).toContain('…');
    expect(r.stdout).not.toContain('END');
    expect(r.stdout).toContain('(4 rows from 2 shards)');
  });

  it('piped (not a terminal) and in --json, prints every cell in full', async () => {
    const piped = await cli(table, { COLUMNS: '60' });
    expect(piped.stdout).toContain(LONG_NOTE);
    const json = await cli(['--json', ...table.slice(0, 2)], { SHARDCTL_TTY: '1', COLUMNS: '60' });
    expect(JSON.parse(json.stdout).map((r: { body: string }) => r.body)).toContain(LONG_NOTE);
  });

  it("verify's detail column fits too, with the whole message in --json", async () => {
    // tenant 2 belongs on shard-0: a row of it on shard-1 is misplaced
    await cluster.sql(1, 'INSERT INTO tenants VALUES (2, $1)', ['misplaced tenant 2']);
    try {
      const r = await cli(['verify', '--only', 'misplaced-rows'], { SHARDCTL_TTY: '1', COLUMNS: '70' });
      expect(r.code).toBe(1);
      for (const line of r.stdout.trimEnd().split('\n')) expect(line.length).toBeLessThanOrEqual(70);
      const json = await cli(['--json', 'verify', '--only', 'misplaced-rows'], { SHARDCTL_TTY: '1', COLUMNS: '70' });
      const messages = (JSON.parse(json.stdout) as { findings: { message: string }[] }).findings.map((f) => f.message);
      expect(messages.length).toBeGreaterThan(0);
      expect(Math.max(...messages.map((m) => m.length))).toBeGreaterThan(40);
    } finally {
      await cluster.sql(1, 'DELETE FROM tenants WHERE tenant_id = 2');
    }
  });
});

describe('a reader that stops early', () => {
  it('query ... | head ends quietly: no EPIPE stack trace, exit 0', () => {
    const r = spawnSync(
      'sh',
      [
        '-c',
        `"${process.execPath}" "${BIN}" -c "${cluster.mapFile}" query --shard=shard-0 'SELECT g FROM generate_series(1, 300000) g' | head -2`,
      ],
      { encoding: 'utf8', env: { ...process.env, CI: '1' } },
    );
    expect(r.stdout).toBe('{"g":1}\n{"g":2}\n');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('--help', () => {
  it.each([
    ['query', "$ shardctl query -p 123 'SELECT * FROM invoices WHERE tenant_id = $1'"],
    ['migrate', '$ shardctl migrate --canary shard-0'],
    ['verify', '$ shardctl verify --tenant 123 --json'],
    ['rebalance', '$ shardctl rebalance --tenant 123 --to shard-2 --dry-run'],
    ['locate', '$ shardctl locate 123 456 --offline'],
    ['completion', '$ shardctl completion bash > ~/.local/share/bash-completion/completions/shardctl'],
  ])('of %s ends with examples', async (command, example) => {
    const r = await runCli([command, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\nExamples:\n {2}\$ shardctl /);
    expect(r.stdout).toContain(example);
  });

  it('of a subcommand has its own examples', async () => {
    const r = await runCli(['migrate', 'status', '--help']);
    expect(r.stdout).toContain('$ shardctl migrate status --check');
    expect(r.stdout).not.toContain('--canary shard-0');
  });
});

describe('shardctl completion', () => {
  it('bash: a script bash accepts, with every command, subcommand and option', async () => {
    const r = await runCli(['completion', 'bash']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('complete -o default -F _shardctl shardctl');
    for (const word of ['validate', 'query', 'rebalance', 'migrate status', 'dev up', '--param', '--max-pause'])
      expect(r.stdout).toContain(word);
    execFileSync('bash', ['-n'], { input: r.stdout });
    // Completing `shardctl migrate st` in bash offers `status`.
    const offered = execFileSync(
      'bash',
      ['-c', `${r.stdout}\nCOMP_WORDS=(shardctl migrate st); COMP_CWORD=2; _shardctl; echo "\${COMPREPLY[@]}"`],
      {
        encoding: 'utf8',
      },
    );
    expect(offered.trim()).toBe('status');
  });

  it('zsh and fish: scripts of their own', async () => {
    const zsh = await runCli(['completion', 'zsh']);
    expect(zsh.stdout.startsWith('#compdef shardctl\n')).toBe(true);
    expect(zsh.stdout).toContain("'query:answer a SELECT");
    const fish = await runCli(['completion', 'fish']);
    expect(fish.stdout).toContain("complete -c shardctl -f -n 'test (__shardctl_path) = '\\'''\\''' -a 'query'");
  });

  it('refuses a shell it has no script for, naming the ones it has', async () => {
    const r = await runCli(['completion', 'powershell']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Allowed choices are bash, zsh, fish/);
    expect(r.stdout).toBe('');
  });
});
