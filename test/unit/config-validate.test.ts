import { describe, expect, it } from 'vitest';
import { ConfigError, parseShardMap, parseDuration } from '../../src/index.js';

const base = (
  shards: string,
  placement = 'placement: { strategy: modulo }',
  key = 'shardKey: { column: tenant_id, type: bigint }',
) => `version: 1\n${key}\n${placement}\nshards:\n${shards}`;
const two = `  - name: shard-0\n    url: postgres://app:pw0@db0:5432/app\n  - name: shard-1\n    url: postgres://app:pw1@db1:5432/app\n`;

function problems(text: string, env: Record<string, string> = {}): string[] {
  try {
    parseShardMap(text, { file: 'shards.yaml', env });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const ce = e as ConfigError;
    expect(ce.exitCode).toBe(2);
    return ce.problems.map((p) => `${p.line}:${p.column} ${p.path}: ${p.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('shard map validation', () => {
  it('accepts a valid modulo map and fills defaults', () => {
    const map = parseShardMap(base(two), { file: '/etc/shardctl/shards.yaml', env: {} });
    expect(map.shards.map((s) => [s.name, s.index])).toEqual([
      ['shard-0', 0],
      ['shard-1', 1],
    ]);
    expect(map.catalog).toBe('shard-0');
    expect(map.migrations).toBe('/etc/shardctl/migrations');
    expect(map.tables).toBeNull();
    expect(map.reference).toEqual([]);
    expect(map.migrate).toEqual({ lockTimeoutMs: 5000, statementTimeoutMs: 0 });
  });

  it('reports malformed YAML with line and column', () => {
    const p = problems('version: 1\nshards:\n  - name: a\n   url: [unclosed\n');
    expect(p[0]).toMatch(/^\d+:\d+ : malformed YAML/);
    expect(Number(p[0]!.split(':')[0])).toBeGreaterThanOrEqual(3);
  });

  it('rejects unknown keys at every level, with a suggestion', () => {
    const p = problems(base(`  - name: shard-0\n    url: postgres://a:b@h/db\n    urll: x\n`) + 'shardkey: 1\n');
    expect(p).toContainEqual(
      expect.stringMatching(/^7:5 shards\[0\]\.urll: unknown key "urll" \(did you mean "url"\?\)/),
    );
    expect(p).toContainEqual(
      expect.stringMatching(/^8:1 shardkey: unknown key "shardkey" \(did you mean "shardKey"\?\)/),
    );
  });

  it('rejects a wrong version and a missing one', () => {
    expect(problems(base(two).replace('version: 1', 'version: 2'))).toContainEqual(
      expect.stringMatching(/^1:10 version: unsupported version 2/),
    );
    expect(problems(base(two).replace('version: 1\n', ''))).toContainEqual(
      expect.stringMatching(/version: is required/),
    );
  });

  it('rejects no shards', () => {
    expect(problems(base('  []\n'.replace('  ', '')).replace('shards:\n[]', 'shards: []'))).toContainEqual(
      expect.stringMatching(/shards: lists no shards/),
    );
    expect(problems('version: 1\nshardKey: { column: tenant_id }\nplacement: { strategy: modulo }\n')).toContainEqual(
      expect.stringMatching(/shards: is required/),
    );
  });

  it('rejects duplicate names and duplicate URLs, pointing at the second', () => {
    const p = problems(
      base(`  - name: a\n    url: postgres://u:p@db0:5432/app\n  - name: a\n    url: postgres://u:q@DB0/app\n`),
    );
    expect(p).toContainEqual(
      expect.stringMatching(/^7:11 shards\[1\]\.name: duplicate shard name "a" \(also shards\[0\]\)/),
    );
    expect(p).toContainEqual(
      expect.stringMatching(/^8:10 shards\[1\]\.url: duplicate URL: shards\[0\] already points at db0:5432\/app/),
    );
  });

  it('rejects bucket gaps, overlaps and out-of-range buckets', () => {
    const hash = 'placement: { strategy: hash, buckets: 100 }';
    const gap = problems(
      base(
        `  - name: a\n    url: postgres://u:p@h1/d\n    buckets: 0-39\n  - name: b\n    url: postgres://u:p@h2/d\n    buckets: 50-99\n`,
        hash,
      ),
    );
    expect(gap).toContainEqual(expect.stringMatching(/shards\[1\]\.buckets: gap: buckets 40-49 belong to no shard/));
    const overlap = problems(
      base(
        `  - name: a\n    url: postgres://u:p@h1/d\n    buckets: 0-59\n  - name: b\n    url: postgres://u:p@h2/d\n    buckets: 50-99\n`,
        hash,
      ),
    );
    expect(overlap).toContainEqual(
      expect.stringMatching(/^10:14 shards\[1\]\.buckets: overlap: buckets 50-59 are owned by a and b/),
    );
    const range = problems(base(`  - name: a\n    url: postgres://u:p@h1/d\n    buckets: 0-100\n`, hash));
    expect(range).toContainEqual(expect.stringMatching(/bucket range 0-100 is out of range: buckets are 0-99/));
    const tail = problems(base(`  - name: a\n    url: postgres://u:p@h1/d\n    buckets: 0-89\n`, hash));
    expect(tail).toContainEqual(expect.stringMatching(/gap: buckets 90-99 belong to no shard/));
  });

  it('accepts bucket lists and comma-separated ranges covering everything', () => {
    const map = parseShardMap(
      base(
        `  - name: a\n    url: postgres://u:p@h1/d\n    buckets: [0-9, 20-29]\n  - name: b\n    url: postgres://u:p@h2/d\n    buckets: "10-19, 30-31"\n`,
        'placement: { strategy: hash, buckets: 32 }',
      ),
      { env: {} },
    );
    expect(map.shards[1]!.buckets).toEqual([
      { from: 10, to: 19 },
      { from: 30, to: 31 },
    ]);
  });

  it('rejects modulo with a text or uuid key', () => {
    const p = problems(base(two, undefined, 'shardKey: { column: tenant_id, type: text }'));
    expect(p).toContainEqual(
      expect.stringMatching(
        /^2:38 shardKey\.type: the modulo strategy needs an integer shard key, but the type is text/,
      ),
    );
  });

  it('reports an unset environment variable and honours ${VAR:-default}', () => {
    const text = base(
      `  - name: a\n    url: postgres://u:\${PW_A}@h1/d\n  - name: b\n    url: postgres://u:\${PW_B:-fallback}@h2/d\n`,
    );
    expect(problems(text)).toEqual([
      expect.stringMatching(/^6:10 shards\[0\]\.url: environment variable PW_A is not set/),
    ]);
    const map = parseShardMap(text, { env: { PW_A: 'secret' } });
    expect(map.shards[0]!.url).toBe('postgres://u:secret@h1/d');
    expect(map.shards[1]!.url).toBe('postgres://u:fallback@h2/d');
  });

  it('collects every problem at once', () => {
    const p = problems(
      'version: 3\nshardKey: { column: tenant_id, type: text }\nplacement: { strategy: modulo }\nshards:\n  - name: a\n    url: nope\n  - name: a\n    url: postgres://u:p@h/d\ncatalog: zzz\n',
    );
    expect(p.length).toBeGreaterThanOrEqual(5);
  });

  it('rejects a catalog that names no shard and a bad placement strategy', () => {
    expect(problems(base(two) + 'catalog: shard-9\n')).toContainEqual(
      expect.stringMatching(/catalog: names no shard of this map \("shard-9"\)/),
    );
    expect(problems(base(two, 'placement: { strategy: range }'))).toContainEqual(
      expect.stringMatching(/placement\.strategy: must be modulo or hash, got "range"/),
    );
  });

  it('parses durations', () => {
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration(0)).toBe(0);
    expect(parseDuration('soon')).toBeUndefined();
    const map = parseShardMap(base(two) + 'migrate: { lockTimeout: 2s, statementTimeout: 1min }\n', { env: {} });
    expect(map.migrate).toEqual({ lockTimeoutMs: 2000, statementTimeoutMs: 60000 });
  });

  it("reads the routers' directory TTL, 2 s by default, and locates a bad one", () => {
    expect(parseShardMap(base(two), { env: {} }).routers).toEqual({ directoryTtlMs: 2000 });
    expect(parseShardMap(base(two) + 'routers: { directoryTtl: 250ms }\n', { env: {} }).routers).toEqual({
      directoryTtlMs: 250,
    });
    expect(problems(base(two) + 'routers: { directoryTtl: soon }\n').join('\n')).toMatch(
      /routers\.directoryTtl.*must be a duration/,
    );
    expect(problems(base(two) + 'routers: { ttl: 1s }\n').join('\n')).toMatch(/routers\.ttl/);
  });

  it('never puts a password into a config error', () => {
    const p = problems(
      base(`  - name: a\n    url: postgres://u:hunter22@h1/d\n  - name: a\n    url: postgres://u:hunter22@h1/d\n`),
    );
    expect(p.join('\n')).not.toContain('hunter22');
  });
});
