import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as publicApi from '../../src/index.js';
import * as internal from '../../src/internal.js';

const README = readFileSync(path.resolve(import.meta.dirname, '..', '..', 'README.md'), 'utf8');

describe('entries', () => {
  it("exports from the public entry every name the README's Library section uses", () => {
    const library = README.slice(README.indexOf('## Library'), README.indexOf('## Tests'));
    const imported = [...library.matchAll(/import \{([^}]+)\} from 'shardctl'/g)].flatMap((m) =>
      m[1]!.split(',').map((n) => n.trim()),
    );
    // "Every command is also a function (`checkShards`, `locateTenants`, `devUp`, ...)"
    const functions = /Every command is also a function \(([^)]*)\)/.exec(library)?.[1] ?? '';
    const named = [...functions.matchAll(/`(\w+)`/g)].map((m) => m[1]!);
    const names = [...new Set([...imported, ...named])];
    expect(names).toEqual(
      expect.arrayContaining(['loadShardMap', 'createRouter', 'isFenceError', 'checkShards', 'devUp']),
    );
    for (const n of names) expect(publicApi, n).toHaveProperty(n);
  });

  it('keeps CLI-only internals out of the public entry and in the internal one', () => {
    for (const n of ['TENANT_TABLES_SQL', 'misplacedRowsSql', 'lockHolder', 'MIGRATE_LOCK_KEY', 'readRuleState']) {
      expect(publicApi, n).not.toHaveProperty(n);
      expect(internal, n).toHaveProperty(n);
    }
  });
});
