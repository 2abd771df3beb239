import type { Command } from 'commander';
import { checkShards, ExitCode, listShards, measureTenantSizes, shardBalance } from '../../index.js';
import { formatBytes, globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';

/** `shardctl shards [--check]`: lists shards; with --check, connects to each and reports health. */
export function registerShards(program: Command, ctx: CliContext): void {
  program
    .command('shards')
    .description('list the shards (passwords hidden); --check connects to each in parallel')
    .option('--check', 'connect to every shard and report reachability, latency, version, size')
    .action(async (opts: { check?: boolean }, cmd: Command) => {
      const map = await mapOf(cmd, ctx);
      const list = listShards(map);
      const json = globals(cmd).json;
      if (!opts.check) {
        if (json) return outJson(ctx, { shards: list });
        await outTable(
          ctx,
          ['shard', 'url', ...(map.placement.strategy === 'hash' ? ['buckets'] : []), 'catalog'],
          list.map((s) => [s.name, s.url, ...(s.buckets !== undefined ? [s.buckets] : []), s.catalog ? 'yes' : '']),
        );
        return;
      }
      const [results, sizes] = await Promise.all([
        checkShards(map, { timeoutMs: timeoutOf(cmd) }),
        measureTenantSizes(map, { timeoutMs: timeoutOf(cmd) }),
      ]);
      const balance = shardBalance(sizes.flatMap((r) => (r.status === 'ok' ? [r.value] : [])));
      const failed = results.filter((r) => r.status === 'failed');
      if (failed.length > 0) ctx.exitCode = ExitCode.Failed;
      if (json) {
        return outJson(ctx, {
          ok: failed.length === 0,
          shards: results.map((r, i) => ({
            ...list[i],
            reachable: r.status === 'ok',
            ...(r.status === 'ok' ? r.value : {}),
            ...(r.status === 'failed' ? { error: r.error.message, code: r.error.code } : {}),
            ...(balance.find((b) => b.shard === r.shard) ? { balance: balance.find((b) => b.shard === r.shard) } : {}),
          })),
        });
      }
      await outTable(
        ctx,
        [
          'shard',
          'url',
          'reachable',
          'latency',
          'version',
          'db size',
          'tenant rows (est.)',
          'shardctl schema',
          'error',
        ],
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
      if (balance.length > 0) {
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
      const slots = results.flatMap((r) =>
        r.status === 'ok'
          ? r.value.replicationSlots.map(
              (s) =>
                `${r.shard}: ${s.name} retains ${formatBytes(s.retainedWalBytes)} of WAL${s.active ? '' : ' (inactive)'}`,
            )
          : [],
      );
      for (const s of slots) out(ctx, `replication slot ${s}`);
      out(
        ctx,
        failed.length === 0
          ? `all ${results.length} shards reachable`
          : `${failed.length} of ${results.length} shards unreachable: ${failed.map((f) => f.shard).join(', ')}`,
      );
    });
}

/** A horizontal bar of `width` cells for value/max, in eighths of a cell. */
export function bar(value: number, max: number, width: number): string {
  const eighths = Math.round((value / (max || 1)) * width * 8);
  const full = Math.floor(eighths / 8);
  const rest = eighths % 8;
  return '█'.repeat(full) + (rest > 0 ? ' ▏▎▍▌▋▊▉'[rest] : '');
}
