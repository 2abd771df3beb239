import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cutCell, fitColumnWidths, MAX_CELL_LINES, naturalWidth } from '../../src/cli/table-fit.js';
import { shellLine, shellQuote } from '../../src/cli/shell-quote.js';

describe('fitColumnWidths', () => {
  it('leaves a table that fits alone', () => {
    expect(fitColumnWidths([10, 20], 80)).toBeUndefined();
    expect(fitColumnWidths([10, 67], 80)).toBeUndefined();
  });

  it('keeps narrow columns and gives the wide ones what is left, borders counted', () => {
    const widths = fitColumnWidths([10, 12, 250], 80)!;
    expect(widths.slice(0, 2)).toEqual([10, 12]);
    expect(widths.reduce((a, b) => a + b, 0) + 4).toBeLessThanOrEqual(80);
    expect(widths[2]).toBe(80 - 4 - 22);
  });

  it('splits evenly between two wide columns', () => {
    const widths = fitColumnWidths([8, 100, 300], 100)!;
    expect(widths).toEqual([8, 44, 44]);
  });

  it('gives each column its longest word first, then shares the rest', () => {
    // a URL column and short ones: the short ones keep their words whole
    const widths = fitColumnWidths([9, 45, 11, 9, 20], 60, [9, 24, 11, 9, 8])!;
    expect(widths.reduce((a, b) => a + b, 0) + 6).toBeLessThanOrEqual(60);
    expect(widths[0]).toBe(9);
    expect(widths[2]).toBe(11);
    expect(widths[1]).toBeGreaterThan(widths[4]!);
  });

  it('never goes below a readable width, even on a very narrow terminal', () => {
    for (const w of fitColumnWidths([40, 40, 40, 40], 20)!) expect(w).toBeGreaterThanOrEqual(8);
  });
});

describe('cutCell and naturalWidth', () => {
  it('cuts after the lines a cell may take, with an ellipsis', () => {
    const cut = cutCell('x'.repeat(100), 12);
    expect(cut.split('\n')).toHaveLength(MAX_CELL_LINES);
    for (const line of cut.split('\n')) expect(line.length).toBeLessThanOrEqual(10);
    expect(cut.replace(/\n/g, '')).toHaveLength(10 * MAX_CELL_LINES);
    expect(cut.endsWith('…')).toBe(true);
    expect(cutCell('short', 12)).toBe('short');
  });

  it('measures the widest line plus padding', () => {
    expect(naturalWidth('ab\nabcd')).toBe(6);
    expect(naturalWidth('')).toBe(2);
  });
});

describe('shellQuote', () => {
  it.each([
    ['shards.yaml', 'shards.yaml'],
    ['25%', '25%'],
    ['SELECT * FROM t WHERE id = $1', `'SELECT * FROM t WHERE id = $1'`],
    ["it's", `'it'\\''s'`],
    ['', `''`],
  ])('%s -> %s', (word, quoted) => expect(shellQuote(word)).toBe(quoted));

  it('gives a line that sh splits back into the same words', () => {
    const words = ['query', '-p', 'paid', "SELECT 'a b', $1, * FROM t -- x", 'a"b', '\\n'];
    const r = spawnSync('sh', ['-c', `printf '%s\\0' ${shellLine(words)}`], { encoding: 'utf8' });
    expect(r.stdout.split('\0').slice(0, -1)).toEqual(words);
  });
});
