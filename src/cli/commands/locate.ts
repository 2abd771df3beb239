import type { Command } from 'commander';
import { locateTenants } from '../../index.js';
import { err, globals, mapOf, outJson, outTable, timeoutOf, type CliContext } from '../context.js';

/** `shardctl locate <tenant...> [--offline]`: where tenants live. */
export function registerLocate(program: Command, ctx: CliContext): void {
  program
    .command('locate')
    .description("show each tenant's shard: the placement rule, overridden by the catalog's directory")
    .argument('<tenant...>', 'tenant ids (shard-key values)')
    .option('--offline', 'compute from the map alone; do not read the directory')
    .action(async (tenants: string[], opts: { offline?: boolean }, cmd: Command) => {
      const map = await mapOf(cmd, ctx);
      const report = await locateTenants(map, tenants, { offline: opts.offline ?? false, timeoutMs: timeoutOf(cmd) });
      if (globals(cmd).json) return outJson(ctx, report);
      const hash = map.placement.strategy === 'hash';
      await outTable(
        ctx,
        ['tenant', 'shard', 'rule', ...(hash ? ['bucket'] : []), 'directory override'],
        report.locations.map((l) => [
          l.tenant,
          l.shard,
          l.ruleShard,
          ...(hash ? [l.bucket] : []),
          report.offline ? 'not checked' : l.foundByData ? 'rows found here' : l.override ? 'yes' : 'no',
        ]),
      );
      if (report.offline)
        err(ctx, 'offline: computed from the map alone; moved tenants (directory overrides) are not reflected');
      else if (!report.ruleRecorded)
        err(
          ctx,
          "the catalog records no placement rule: each answer was checked against the shards' rows (run `shardctl adopt` to record the rule)",
        );
      for (const w of report.warnings) err(ctx, `warning: ${w}`);
    });
}
