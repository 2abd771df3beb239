import type { Command } from 'commander';
import {
  checkShards,
  ExitCode,
  listShards,
  measureTenantSizes,
  shardBalance,
  type ShardMap,
  type ShardSummary,
} from '../../index.js';
import { formatBytes, globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';
import { bar } from '../render.js';

type HealthResults = Awaited<ReturnType<typeof checkShards>>;
type Balance = ReturnType<typeof shardBalance>;

async function showList(ctx: CliContext, map: ShardMap, list: ShardSummary[]): Promise<void> {
  await outTable(
    ctx,
    ['shard', 'url', ...(map.placement.strategy === 'hash' ? ['buckets'] : []), 'catalog'],
    list.map((s) => [s.name, s.url, ...(s.buckets !== undefined ? [s.buckets] : []), s.catalog ? 'yes' : '']),
  );
}

function checkJson(list: ShardSummary[], results: HealthResults, balance: Balance, ok: boolean): unknown {
  return {
    ok,
    shards: results.map((r, i) => ({
      ...list[i],
      reachable: r.status === 'ok',
      ...(r.status === 'ok' ? r.value : {}),
      ...(r.status === 'failed' ? { error: r.error.message, code: r.error.code } : {}),
      ...(balance.find((b) => b.shard === r.shard) ? { balance: balance.find((b) => b.shard === r.shard) } : {}),
    })),
  };
}

async function showHealth(ctx: CliContext, list: ShardSummary[], results: HealthResults): Promise<void> {
  await outTable(
    ctx,
    ['shard', 'url', 'reachable', 'latency', 'version', 'db size', 'tenant rows (est.)', 'shardctl schema', 'error'],
    results.map((r, i) => {
      const s = list[i]!;
      if (r.status !== 'ok')
        return [s.name, s.url, 'no', '', '', '', '', '', r.status === 'failed' ? r.error.message : r.reason];
      const h = r.value;
      return [
        s.name,
        s.url,
        'yes',
        `${h.latencyMs.toFixed(1)} ms`,
        h.serverVersion,
        formatBytes(h.databaseBytes),
        h.tenantRowsEstimate.toLocaleString('en-US'),
        h.catalogVersion === 0 ? 'none' : `v${h.catalogVersion}`,
        '',
      ];
    }),
  );
}

async function showBalance(ctx: CliContext, balance: Balance): Promise<void> {
  if (balance.length === 0) return;
  const max = Math.max(...balance.map((b) => b.bytes), 1);
  await outTable(
    ctx,
    ['shard', 'tenant data', 'tenants', 'skew vs mean', ''],
    balance.map((b) => [
      b.shard,
      formatBytes(b.bytes),
      `${b.estimated ? '~' : ''}${b.tenants}`,
      `${b.skew >= 0 ? '+' : ''}${(b.skew * 100).toFixed(0)}%`,
      bar(b.bytes, max, 24),
    ]),
  );
}

function showSlotsAndSummary(ctx: CliContext, results: HealthResults): void {
  for (const r of results) {
    if (r.status !== 'ok') continue;
    for (const s of r.value.replicationSlots)
      out(
        ctx,
        `replication slot ${r.shard}: ${s.name} retains ${formatBytes(s.retainedWalBytes)} of WAL${s.active ? '' : ' (inactive)'}`,
      );
    if (r.value.preparedTransactions > 0)
      out(
        ctx,
        `prepared transactions ${r.shard}: ${r.value.preparedTransactions} in doubt (shardctl recover ends them)`,
      );
    if (r.value.maxPreparedTransactions === 0)
      out(ctx, `${r.shard}: max_prepared_transactions = 0: it cannot take part in transactions across shards`);
  }
  const failed = results.filter((r) => r.status === 'failed');
  out(
    ctx,
    failed.length === 0
      ? `all ${results.length} shards reachable`
      : `${failed.length} of ${results.length} shards unreachable: ${failed.map((f) => f.shard).join(', ')}`,
  );
}

async function shardsAction(opts: { check?: boolean }, cmd: Command, ctx: CliContext): Promise<void> {
  const map = await mapOf(cmd, ctx);
  const list = listShards(map);
  const json = globals(cmd).json;
  if (!opts.check) return json ? outJson(ctx, { shards: list }) : showList(ctx, map, list);
  const [results, sizes] = await Promise.all([
    checkShards(map, { timeoutMs: timeoutOf(cmd) }),
    measureTenantSizes(map, { timeoutMs: timeoutOf(cmd) }),
  ]);
  const balance = shardBalance(sizes.flatMap((r) => (r.status === 'ok' ? [r.value] : [])));
  const allReachable = results.every((r) => r.status !== 'failed');
  if (!allReachable) ctx.exitCode = ExitCode.Failed;
  if (json) return outJson(ctx, checkJson(list, results, balance, allReachable));
  await showHealth(ctx, list, results);
  await showBalance(ctx, balance);
  showSlotsAndSummary(ctx, results);
}

/** `shardctl shards [--check]`: lists shards; with --check, connects to each and reports health. */
export function registerShards(program: Command, ctx: CliContext): void {
  program
    .command('shards')
    .description('list the shards (passwords hidden); --check connects to each in parallel')
    .option(
      '--check',
      'connect to every shard: reachability, latency, version, sizes, tenant balance, replication slots',
    )
    .action((opts: { check?: boolean }, cmd: Command) => shardsAction(opts, cmd, ctx));
}
