import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ExitCode, streamQuery, type QueryField, type ValueShape } from '../../index.js';
import { err, globals, mapOf, out, outTable, timeoutOf, type CliContext } from '../context.js';
import { durationOption, usage, wholeNumberOption } from '../options.js';
import { ARRAY_ELEMENT, parseArrayText, parseRecordText } from '../render.js';
import { csvCell, csvRowOf, jsonScalarCell, ndjsonRowOf, writeLines } from './query-render.js';

/** A scalar by its type oid (see {@link jsonValue}). */
function jsonScalar(v: string, typeOid: number): string {
  return jsonScalarCell(typeOid)(v);
}

function jsonArray(items: ReturnType<typeof parseArrayText>, element: ValueShape): string {
  return `[${items.map((x) => (Array.isArray(x) ? jsonArray(x, element) : jsonShaped(x, element))).join(',')}]`;
}

/** A value of a known shape: arrays and composites recursively, anonymous records' fields as text. */
function jsonShaped(v: string | null, shape: ValueShape): string {
  if (v === null) return 'null';
  switch (shape.kind) {
    case 'scalar':
      return jsonValue(v, { typeOid: shape.typeOid });
    case 'array':
      return jsonArray(parseArrayText(v), shape.element);
    case 'record':
      return JSON.stringify(parseRecordText(v));
    case 'composite': {
      const parts = parseRecordText(v);
      const members = shape.attributes.map(
        (a, i) => `${JSON.stringify(a.name)}:${jsonShaped(parts[i] ?? null, a.shape)}`,
      );
      return `{${members.join(',')}}`;
    }
  }
}

/**
 * A value as JSON text: numbers stay exact (their PostgreSQL text is a JSON number), json stays json,
 * arrays are JSON arrays of their elements rendered the same way, composite values are objects keyed
 * by their type's attributes (anonymous records: arrays of their fields' text), with `shape` from
 * the catalog (`QueryField.shape`).
 *
 * @example
 * jsonValue('{1,NULL}', { typeOid: 1016 }) // '[1,null]'
 * jsonValue('(7,"a b")', { typeOid: 16390, shape: { kind: 'composite', attributes: [{ name: 'n', shape: { kind: 'scalar', typeOid: 20 } }, { name: 's', shape: { kind: 'scalar', typeOid: 25 } }] } }) // '{"n":7,"s":"a b"}'
 */
export function jsonValue(v: string | null, f: Pick<QueryField, 'typeOid' | 'shape'>): string {
  if (v === null) return 'null';
  if (f.shape) return jsonShaped(v, f.shape);
  const element = ARRAY_ELEMENT[f.typeOid];
  if (element !== undefined) return jsonArray(parseArrayText(v), { kind: 'scalar', typeOid: element });
  return jsonScalar(v, f.typeOid);
}

/** A row as a JSON object; each column's key text and renderer are chosen once per query, not once per row. */
function jsonRowOf(fields: QueryField[]): (row: (string | null)[]) => string {
  return ndjsonRowOf(fields, jsonValue);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Commander collector of a repeatable option: each `-p` is one value, kept in order. (A variadic
 * `-p <value...>` would swallow the SQL argument that follows it.)
 *
 * @example
 * collectParam('paid', ['5']) // ['5', 'paid']
 */
export function collectParam(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

interface QueryOpts {
  file?: string;
  param?: string[];
  tenant?: string;
  shard?: string[];
  format?: string;
  /** ms, parsed by the option's parser. */
  statementTimeout?: number;
  allowPartial?: boolean;
  explain?: boolean;
  maxRows: number;
}

type QueryResult = Awaited<ReturnType<typeof streamQuery>>;
type Row = (string | null)[];

/** The query text: `-f FILE`, the argument, or stdin when it is not a terminal. */
async function querySql(sqlArg: string | undefined, opts: QueryOpts): Promise<string> {
  const sql = opts.file
    ? await readFile(opts.file, 'utf8')
    : (sqlArg ?? (process.stdin.isTTY ? undefined : await readStdin()));
  if (!sql || !sql.trim()) throw usage('no query: pass it as an argument, with -f FILE, or on stdin');
  return sql;
}

function formatOf(opts: QueryOpts, json: boolean | undefined, ctx: CliContext): string {
  const format = opts.format ?? (json ? 'json' : ctx.stdout.isTTY ? 'table' : 'ndjson');
  if (!['table', 'json', 'ndjson', 'csv'].includes(format))
    throw usage(`--format must be table, json, ndjson or csv, got "${format}"`);
  return format;
}

function showExplain(ctx: CliContext, plan: QueryResult['plan'], json: boolean | undefined): void {
  if (json) {
    const { kind, shards, routing, shardSql, steps } = plan;
    ctx.stdout.write(JSON.stringify({ kind, shards, routing, shardSql, steps }, null, 2) + '\n');
    return;
  }
  out(ctx, `shards: ${plan.shards.join(', ') || '(none)'} (${plan.routing})`);
  out(ctx, `sent to each shard (READ ONLY):\n  ${plan.shardSql.split('\n').join('\n  ')}`);
  out(ctx, 'merge:');
  for (const s of plan.steps) out(ctx, `  - ${s}`);
}

/** ndjson and csv: rows are written as they arrive, in large chunks, waiting for stdout to drain. */
async function writeStreamed(ctx: CliContext, result: QueryResult, format: string): Promise<void> {
  const { fields, batches } = result;
  if (format === 'ndjson') return writeLines(ctx.stdout, batches, jsonRowOf(fields));
  ctx.stdout.write(fields.map((f) => csvCell(f.name)).join(',') + '\n');
  return writeLines(ctx.stdout, batches, csvRowOf(fields));
}

/** json and table need every row before the first byte. */
async function writeCollected(ctx: CliContext, result: QueryResult, format: string): Promise<void> {
  const { fields, batches } = result;
  const all: Row[] = [];
  // push one by one: spreading a batch of a few hundred thousand rows would overflow the call stack
  for await (const batch of batches) for (const r of batch) all.push(r);
  if (format === 'json') {
    const jsonRow = jsonRowOf(fields);
    ctx.stdout.write(`[${all.map(jsonRow).join(',\n')}]\n`);
    return;
  }
  // outTable fits long values to the terminal; NULL is spelled out as psql does not, to tell it from ''.
  await outTable(
    ctx,
    fields.map((f) => f.name),
    all.map((r) => r.map((v) => (v === null ? 'NULL' : v))),
  );
  const n = all.length;
  const shards = result.plan.shards.length;
  out(ctx, `(${n} row${n === 1 ? '' : 's'} from ${shards} shard${shards === 1 ? '' : 's'})`);
}

async function queryAction(sqlArg: string | undefined, opts: QueryOpts, cmd: Command, ctx: CliContext) {
  const map = await mapOf(cmd, ctx);
  const sql = await querySql(sqlArg, opts);
  const json = globals(cmd).json;
  const format = formatOf(opts, json, ctx);
  const result = await streamQuery(map, sql, opts.param ?? [], {
    ...(opts.tenant !== undefined ? { tenant: opts.tenant } : {}),
    ...(opts.shard ? { shards: opts.shard } : {}),
    ...(opts.statementTimeout ? { statementTimeoutMs: opts.statementTimeout } : {}),
    timeoutMs: timeoutOf(cmd),
    allowPartial: opts.allowPartial ?? false,
    maxRows: opts.maxRows,
    explain: opts.explain ?? false,
  });
  if (opts.explain) return showExplain(ctx, result.plan, json);
  for (const m of result.missing)
    err(ctx, `warning: ${m.shard} did not answer (${m.error}): the result lacks its rows`);
  if (result.missing.length > 0) ctx.exitCode = ExitCode.Partial;
  if (format === 'ndjson' || format === 'csv') await writeStreamed(ctx, result, format);
  else await writeCollected(ctx, result, format);
}

/** `shardctl query`: one SELECT answered across shards, exactly, or refused. */
export function registerQuery(program: Command, ctx: CliContext): void {
  program
    .command('query')
    .description('answer a SELECT across shards exactly as one PostgreSQL would, or refuse it naming the construct')
    .argument('[sql]', 'the query (or -f FILE, or stdin)')
    .option('-f, --file <file>', 'read the query from a file')
    .option(
      '-p, --param <value>',
      'value of the next $n parameter; repeat it: -p 5 -p paid (before or after the SQL)',
      collectParam,
    )
    .option('--tenant <id>', "only this tenant's shard")
    .option('--shard <name...>', 'only these shards (before the SQL, write --shard=NAME: a list takes every word)')
    .option('--format <format>', 'table, json, ndjson or csv (default: table on a terminal, else ndjson)')
    .option(
      '--statement-timeout <duration>',
      'statement_timeout on every shard, e.g. 30000 or 30s',
      durationOption('--statement-timeout', { minMs: 0 }),
    )
    .option('--allow-partial', 'answer from the reachable shards; name the missing ones on stderr (exit 5)')
    .option('--explain', 'print the SQL sent to each shard and the merge steps; run nothing')
    .option('--max-rows <n>', 'most rows held in memory before merging', wholeNumberOption('--max-rows'), 1_000_000)
    .action((sqlArg: string | undefined, opts: QueryOpts, cmd: Command) => queryAction(sqlArg, opts, cmd, ctx));
}
