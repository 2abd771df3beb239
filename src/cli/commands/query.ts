import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ExitCode, streamQuery, ShardctlError, type QueryField } from '../../index.js';
import { err, globals, mapOf, out, outTable, timeoutOf, type CliContext } from '../context.js';

const NUMERIC = new Set([20, 21, 23, 26, 700, 701, 1700]);
const JSONISH = new Set([114, 3802]);

/** A value as JSON text: numbers stay exact (their PostgreSQL text is a JSON number), json stays json. */
export function jsonValue(v: string | null, f: QueryField): string {
  if (v === null) return 'null';
  if (NUMERIC.has(f.typeOid) && /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(v)) return v.replace(/^(-?)0+(\d)/, '$1$2');
  if (f.typeOid === 16) return v === 't' ? 'true' : 'false';
  if (JSONISH.has(f.typeOid)) return v;
  return JSON.stringify(v);
}

function jsonRow(row: (string | null)[], fields: QueryField[]): string {
  return `{${fields.map((f, i) => `${JSON.stringify(f.name)}:${jsonValue(row[i] ?? null, f)}`).join(',')}}`;
}

function csvCell(v: string | null): string {
  if (v === null) return '';
  return /[",\n\r]/.test(v) || v === '' ? `"${v.replace(/"/g, '""')}"` : v;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** `shardctl query`: one SELECT answered across shards, exactly, or refused. */
export function registerQuery(program: Command, ctx: CliContext): void {
  program
    .command('query')
    .description('answer a SELECT across shards exactly as one PostgreSQL would, or refuse it naming the construct')
    .argument('[sql]', 'the query (or -f FILE, or stdin)')
    .option('-f, --file <file>', 'read the query from a file')
    .option('-p, --param <value...>', 'values for $1..$n')
    .option('--tenant <id>', "only this tenant's shard")
    .option('--shard <name...>', 'only these shards')
    .option('--format <format>', 'table, json, ndjson or csv (default: table on a terminal, else ndjson)')
    .option('--statement-timeout <ms>', 'statement_timeout on every shard')
    .option('--allow-partial', 'answer from the reachable shards; name the missing ones on stderr (exit 5)')
    .option('--explain', 'print the SQL sent to each shard and the merge steps; run nothing')
    .option('--max-rows <n>', 'most rows held in memory before merging', '1000000')
    .action(
      async (
        sqlArg: string | undefined,
        opts: {
          file?: string;
          param?: string[];
          tenant?: string;
          shard?: string[];
          format?: string;
          statementTimeout?: string;
          allowPartial?: boolean;
          explain?: boolean;
          maxRows: string;
        },
        cmd: Command,
      ) => {
        const map = await mapOf(cmd, ctx);
        const sql = opts.file
          ? await readFile(opts.file, 'utf8')
          : (sqlArg ?? (process.stdin.isTTY ? undefined : await readStdin()));
        if (!sql || !sql.trim())
          throw new ShardctlError('no query: pass it as an argument, with -f FILE, or on stdin', {
            code: 'USAGE',
            exitCode: ExitCode.Usage,
          });
        const json = globals(cmd).json;
        const format = opts.format ?? (json ? 'json' : ctx.stdout.isTTY ? 'table' : 'ndjson');
        if (!['table', 'json', 'ndjson', 'csv'].includes(format))
          throw new ShardctlError(`--format must be table, json, ndjson or csv, got "${format}"`, {
            code: 'USAGE',
            exitCode: ExitCode.Usage,
          });
        for (const [flag, v] of [
          ['--max-rows', opts.maxRows],
          ['--statement-timeout', opts.statementTimeout],
        ] as const) {
          if (v !== undefined && !/^\d+$/.test(v))
            throw new ShardctlError(`${flag} must be a whole number, got "${v}"`, {
              code: 'USAGE',
              exitCode: ExitCode.Usage,
            });
        }
        const result = await streamQuery(map, sql, opts.param ?? [], {
          ...(opts.tenant !== undefined ? { tenant: opts.tenant } : {}),
          ...(opts.shard ? { shards: opts.shard } : {}),
          ...(opts.statementTimeout ? { statementTimeoutMs: Number(opts.statementTimeout) } : {}),
          timeoutMs: timeoutOf(cmd),
          allowPartial: opts.allowPartial ?? false,
          maxRows: Number(opts.maxRows),
          explain: opts.explain ?? false,
        });
        if (opts.explain) {
          const p = result.plan;
          if (json) {
            ctx.stdout.write(
              JSON.stringify(
                { kind: p.kind, shards: p.shards, routing: p.routing, shardSql: p.shardSql, steps: p.steps },
                null,
                2,
              ) + '\n',
            );
            return;
          }
          out(ctx, `shards: ${p.shards.join(', ') || '(none)'} (${p.routing})`);
          out(ctx, `sent to each shard (READ ONLY):\n  ${p.shardSql}`);
          out(ctx, 'merge:');
          for (const s of p.steps) out(ctx, `  - ${s}`);
          return;
        }
        for (const m of result.missing)
          err(ctx, `warning: ${m.shard} did not answer (${m.error}): the result lacks its rows`);
        if (result.missing.length > 0) ctx.exitCode = ExitCode.Partial;

        const { fields, batches } = result;
        let count = 0;
        if (format === 'ndjson' || format === 'csv') {
          const line =
            format === 'ndjson'
              ? (r: (string | null)[]) => jsonRow(r, fields)
              : (r: (string | null)[]) => r.map(csvCell).join(',');
          if (format === 'csv') ctx.stdout.write(fields.map((f) => csvCell(f.name)).join(',') + '\n');
          for await (const batch of batches) {
            count += batch.length;
            if (!ctx.stdout.write(batch.map(line).join('\n') + '\n'))
              await new Promise((res) => ctx.stdout.once('drain', res));
          }
        } else {
          const all: (string | null)[][] = [];
          for await (const batch of batches) all.push(...batch);
          count = all.length;
          if (format === 'json') {
            ctx.stdout.write(`[${all.map((r) => jsonRow(r, fields)).join(',\n')}]\n`);
          } else {
            const width = Math.max(
              20,
              Math.floor(((ctx.stdout as { columns?: number }).columns ?? 160) / Math.max(1, fields.length)) - 3,
            );
            await outTable(
              ctx,
              fields.map((f) => f.name),
              all.map((r) =>
                r.map((v) =>
                  v === null ? 'NULL' : v.length > width && ctx.stdout.isTTY ? `${v.slice(0, width - 1)}…` : v,
                ),
              ),
            );
            out(
              ctx,
              `(${count} row${count === 1 ? '' : 's'} from ${result.plan.shards.length} shard${result.plan.shards.length === 1 ? '' : 's'})`,
            );
          }
        }
      },
    );
}
