import type { Command } from 'commander';
import { checkShards, ExitCode, listShards } from '../../index.js';
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
        await outTable(ctx, ['shard', 'url', ...(map.placement.strategy === 'hash' ? ['buckets'] : []), 'catalog'], list.map((s) => [s.name, s.url, ...(s.buckets !== undefined ? [s.buckets] : []), s.catalog ? 'yes' : '']));
        return;
      }
      const results = await checkShards(map, { timeoutMs: timeoutOf(cmd) });
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
          })),
        });
      }
      await outTable(
        ctx,
        ['shard', 'url', 'reachable', 'latency', 'version', 'db size', 'tenant rows (est.)', 'shardctl schema', 'error'],
        results.map((r, i) => {
          const s = list[i]!;
          if (r.status !== 'ok') return [s.name, s.url, 'no', '', '', '', '', '', r.status === 'failed' ? r.error.message : r.reason];
          const h = r.value;
          return [s.name, s.url, 'yes', `${h.latencyMs.toFixed(1)} ms`, h.serverVersion, formatBytes(h.databaseBytes), h.tenantRowsEstimate.toLocaleString('en-US'), h.catalogVersion === 0 ? 'none' : `v${h.catalogVersion}`, ''];
        }),
      );
      out(ctx, failed.length === 0 ? `all ${results.length} shards reachable` : `${failed.length} of ${results.length} shards unreachable: ${failed.map((f) => f.shard).join(', ')}`);
    });
}
