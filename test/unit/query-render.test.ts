import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { jsonValue } from '../../src/cli/commands/query.js';
import { CHUNK_CHARS, csvCell, csvRowOf, ndjsonRowOf, writeLines } from '../../src/cli/commands/query-render.js';

const fields = [
  { name: 'id', typeOid: 20 },
  { name: 'amount', typeOid: 1700 },
  { name: 'f', typeOid: 701 },
  { name: 'ok', typeOid: 16 },
  { name: 'note', typeOid: 25 },
  { name: 'tags', typeOid: 1009 },
  { name: 'doc', typeOid: 3802 },
];

describe('streamed row renderers', () => {
  it('render ndjson as the per-value jsonValue does, NULLs and special numbers included', () => {
    const rows: (string | null)[][] = [
      ['1', '0.50', 'NaN', 't', 'say "hi"\n', '{a,NULL}', '{"k": [1]}'],
      [null, '-0.5', '-Infinity', 'f', '', '{}', null],
      ['-9223372036854775808', '12345678901234567890.123', '1e-07', null, 'é\u0001', null, '[]'],
    ];
    const line = ndjsonRowOf(fields, jsonValue);
    for (const r of rows) {
      const expected = `{${fields.map((f, i) => `${JSON.stringify(f.name)}:${jsonValue(r[i] ?? null, f)}`).join(',')}}`;
      expect(line(r)).toBe(expected);
    }
    expect(JSON.parse(line(rows[1]!))).toEqual({
      id: null,
      amount: -0.5,
      f: '-Infinity',
      ok: false,
      note: '',
      tags: [],
      doc: null,
    });
    expect(ndjsonRowOf([], jsonValue)([])).toBe('{}');
  });

  it('quote CSV cells only where RFC 4180 needs it; an empty string is not NULL', () => {
    const line = csvRowOf(fields);
    expect(line(['1', '0.50', 'NaN', 't', 'a,b', '{x,y}', '{"k": 1}'])).toBe('1,0.50,NaN,t,"a,b","{x,y}","{""k"": 1}"');
    expect(line([null, null, null, null, '', null, null])).toBe(',,,,"",,');
    expect(line(['2', '1', '1', 'f', 'two\nlines', 'plain', '1'])).toBe('2,1,1,f,"two\nlines",plain,1');
    expect(csvCell('x\r')).toBe('"x\r"');
  });
});

describe('writeLines', () => {
  it('writes every row once, in order, in chunks of about CHUNK_CHARS', async () => {
    const writes: string[] = [];
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        writes.push(chunk.toString());
        cb();
      },
    });
    async function* batches() {
      for (let b = 0; b < 20; b++) yield Array.from({ length: 1000 }, (_, i) => [String(b * 1000 + i), 'x'.repeat(20)]);
    }
    await writeLines(out, batches(), csvRowOf([{ typeOid: 20 }, { typeOid: 25 }]));
    const lines = writes.join('').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.length).toBe(20_000);
    expect(lines.every((l, i) => l === `${i},${'x'.repeat(20)}`)).toBe(true);
    expect(writes.length).toBeLessThan(10);
    expect(Math.max(...writes.map((w) => w.length))).toBeLessThan(CHUNK_CHARS + 100);
  });

  it('reads no further batch while stdout has not drained (bounded memory behind a slow reader)', async () => {
    let pulled = 0;
    let written = 0;
    let release: (() => void) | undefined;
    // A reader that takes a chunk only when told to: every write but the first waits.
    const out = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _enc, cb) {
        written += chunk.length;
        release = cb;
      },
    });
    async function* batches() {
      for (let b = 0; b < 100; b++) {
        pulled++;
        yield Array.from({ length: 2000 }, () => ['y'.repeat(200)]);
      }
    }
    const done = writeLines(out, batches(), csvRowOf([{ typeOid: 25 }]));
    await new Promise((r) => setTimeout(r, 50));
    // ~2000 rows of 201 chars make one chunk and a bit: the writer is stuck on its first chunk.
    expect(pulled).toBeLessThanOrEqual(2);
    expect(written).toBeLessThanOrEqual(CHUNK_CHARS + 201);
    // Let the reader take each chunk in turn until the writer has finished.
    let finished = false;
    void done.then(() => (finished = true));
    while (!finished) {
      const r = release;
      release = undefined;
      r?.();
      await new Promise((res) => setImmediate(res));
    }
    await done;
    expect(pulled).toBe(100);
    expect(written).toBe(100 * 2000 * 201);
  });
});
