/**
 * Streamed output of `shardctl query` (ndjson, csv): each column's renderer is chosen once per query
 * from its type, rows are rendered straight from PostgreSQL's text into large chunks, and a chunk waits
 * for stdout to drain, so that an export costs little CPU per row and holds a bounded amount of output.
 */
import type { QueryField } from '../../index.js';
import { ARRAY_ELEMENT } from '../render.js';

/** One non-NULL value's output text. */
type Cell = (v: string) => string;
type Row = (string | null)[];

/** Output characters gathered before a write: large enough that a write costs little per row. */
export const CHUNK_CHARS = 1 << 18;

const same: Cell = (v) => v;
const INTEGER = new Set([20, 21, 23, 26]);
const NUMERIC = new Set([700, 701, 1700]);
const JSONISH = new Set([114, 3802]);
const JSON_NUMBER = /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/;

/** A float or numeric as JSON: NaN and Infinity are not JSON numbers and stay strings; no leading zeros. */
export function jsonNumber(v: string): string {
  if (!JSON_NUMBER.test(v)) return JSON.stringify(v);
  const c = v.charCodeAt(v[0] === '-' ? 1 : 0);
  return c === 48 /* 0 */ ? v.replace(/^(-?)0+(\d)/, '$1$2') : v;
}

/**
 * The JSON renderer of a column of a built-in scalar type, or undefined for the others (arrays,
 * composites, domains: the caller renders those through `jsonValue`).
 *
 * @example
 * jsonScalarCell(20)!('42') // '42'
 * jsonScalarCell(25)!('a"b') // '"a\\"b"'
 */
export function jsonScalarCell(typeOid: number): Cell {
  if (INTEGER.has(typeOid) || JSONISH.has(typeOid)) return same;
  if (NUMERIC.has(typeOid)) return jsonNumber;
  if (typeOid === 16) return (v) => (v === 't' ? 'true' : 'false');
  return JSON.stringify;
}

// Types whose text output never holds a comma, quote, CR or LF and is never empty: written as is.
const CSV_PLAIN = new Set([16, 20, 21, 23, 26, 700, 701, 1700, 2950]);

/**
 * A value as a CSV cell (RFC 4180): quoted when it holds a quote, comma or line break, or is empty
 * (an unquoted empty cell is NULL).
 *
 * @example
 * csvCell('a,b') // '"a,b"'
 * csvCell(null) // ''
 */
export function csvCell(v: string | null): string {
  if (v === null) return '';
  return /[",\n\r]/.test(v) || v === '' ? `"${v.replace(/"/g, '""')}"` : v;
}

/** A row renderer: the cells of a row joined, NULL as `nullText`, each column by its own renderer. */
function rowOf(cells: Cell[], nullText: string, before: string[], after: string): (row: Row) => string {
  const n = cells.length;
  return (row) => {
    let s = '';
    for (let i = 0; i < n; i++) {
      const v = row[i];
      s += before[i]! + (v === null || v === undefined ? nullText : cells[i]!(v));
    }
    return s + after;
  };
}

/**
 * The ndjson line of a row (without its newline): each column's key text and renderer are chosen
 * once per query; `valueOf` renders the columns that need their shape (arrays, composites).
 *
 * @example
 * ndjsonRowOf([{ name: 'n', typeOid: 20 }], jsonValue)(['7']) // '{"n":7}'
 */
export function ndjsonRowOf(fields: QueryField[], valueOf: (v: string, f: QueryField) => string): (row: Row) => string {
  if (fields.length === 0) return () => '{}';
  const keys = fields.map((f, i) => `${i === 0 ? '{' : ','}${JSON.stringify(f.name)}:`);
  const cells = fields.map((f): Cell =>
    f.shape || ARRAY_ELEMENT[f.typeOid] !== undefined ? (v) => valueOf(v, f) : jsonScalarCell(f.typeOid),
  );
  return rowOf(cells, 'null', keys, '}');
}

/**
 * The CSV line of a row (without its newline).
 *
 * @example
 * csvRowOf([{ name: 'n', typeOid: 20 }, { name: 's', typeOid: 25 }])(['7', 'a,b']) // '7,"a,b"'
 */
export function csvRowOf(fields: Pick<QueryField, 'typeOid'>[]): (row: Row) => string {
  const cells = fields.map((f): Cell => (CSV_PLAIN.has(f.typeOid) ? same : csvCell));
  return rowOf(cells, '', ['', ...fields.slice(1).map(() => ',')], '');
}

/** Resolves once the stream has drained (or failed or closed: the write's own error reports that). */
function drained(out: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      out.removeListener('drain', done);
      out.removeListener('error', done);
      out.removeListener('close', done);
      resolve();
    };
    out.once('drain', done);
    out.once('error', done);
    out.once('close', done);
  });
}

/**
 * Writes every batch's rows, one line each, in chunks of about {@link CHUNK_CHARS}; a chunk that
 * stdout cannot take at once waits for it to drain before the next batch is read from the shards
 * (the cursors then wait too: memory stays bounded whatever the answer's size).
 *
 * @example
 * await writeLines(process.stdout, stream.batches, csvRowOf(stream.fields));
 */
export async function writeLines(
  out: NodeJS.WritableStream,
  batches: AsyncIterable<Row[]>,
  line: (row: Row) => string,
): Promise<void> {
  let chunk = '';
  for await (const batch of batches) {
    for (const row of batch) {
      chunk += line(row) + '\n';
      if (chunk.length >= CHUNK_CHARS) {
        if (!out.write(chunk)) await drained(out);
        chunk = '';
      }
    }
  }
  if (chunk.length > 0 && !out.write(chunk)) await drained(out);
}
