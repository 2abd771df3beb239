import { describe, expect, it } from 'vitest';
import { compareIds, findDrift, lineColumn, nextMigrationName, type MigrationFile } from '../../src/index.js';

const file = (id: string, checksum = 'c' + id): MigrationFile => ({
  id,
  name: `m${id}`,
  file: `${id}_m${id}.sql`,
  path: '',
  checksum,
  sql: '',
  noTransaction: false,
});
const applied = (id: string, checksum = 'c' + id) => ({ id, name: `m${id}`, checksum, appliedAt: '', durationMs: 1 });

describe('migration files', () => {
  it('orders ids numerically, timestamps and zero-padded numbers alike', () => {
    expect(['10', '0002', '1', '20261124101500'].sort(compareIds)).toEqual(['1', '0002', '10', '20261124101500']);
  });

  it('maps PostgreSQL positions to line and column, counting characters not bytes', () => {
    expect(lineColumn('select 1;\nselec 2', 11)).toEqual({ line: 2, column: 1 });
    expect(lineColumn('-- é\nCREATE TABEL x', 13)).toEqual({ line: 2, column: 8 });
    expect(lineColumn('x', 1)).toEqual({ line: 1, column: 1 });
  });

  it('names the next file with the same width', () => {
    expect(nextMigrationName([file('0007')], 'Add invoice index!')).toBe('0008_add_invoice_index.sql');
    expect(nextMigrationName([], 'first')).toBe('0001_first.sql');
    expect(nextMigrationName([file('20261124101500')], 'x')).toBe('20261124101501_x.sql');
  });

  it('finds drift: changed checksum, missing file, out-of-order history', () => {
    expect(findDrift([applied('0001'), applied('0002')], [file('0001'), file('0002'), file('0003')])).toEqual([]);
    const d = findDrift(
      [applied('0001', 'old'), applied('0003'), applied('0009')],
      [file('0001'), file('0002'), file('0003')],
    );
    expect(d.map((x) => [x.kind, x.id])).toEqual([
      ['checksum-changed', '0001'],
      ['file-missing', '0009'],
      ['out-of-order', '0002'],
    ]);
  });
});
