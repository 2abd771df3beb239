import type { Command } from 'commander';
import { adoptFleet, ExitCode, type AdoptReport } from '../../index.js';
import { err, globals, mapOf, out, outJson, outTable, timeoutOf, type CliContext } from '../context.js';

interface AdoptOpts {
  baseline?: string;
  dryRun?: boolean;
}

/** What adopt found: misplaced tenants, then every other problem. */
async function showRefusal(ctx: CliContext, report: AdoptReport): Promise<void> {
  if (report.misplaced.length > 0) {
    out(ctx, `${report.misplaced.length} misplaced tenant(s): rows not on the shard the rule names`);
    await outTable(
      ctx,
      ['tenant', 'on shard', 'rule says', 'rows', 'tables'],
      report.misplaced.map((m) => [
        m.tenant,
        m.shard,
        m.owner,
        m.rows,
        Object.entries(m.tables)
          .map(([t, n]) => `${t} ${n}`)
          .join(', '),
      ]),
    );
  }
  if (report.problems.length > 0)
    await outTable(
      ctx,
      ['problem', 'shard', 'table', 'detail'],
      report.problems.map((p) => [p.kind, p.shard, p.table, p.message]),
    );
  err(
    ctx,
    `adopt refused: nothing was written. Move the misplaced rows to the shard the rule names (or use the map the data was placed by), fix the schemas, then run adopt again`,
  );
}

/** What adopt recorded, per shard. */
function showRecorded(ctx: CliContext, report: AdoptReport): void {
  out(ctx, `rule: ${report.rule} (fingerprint ${report.fingerprint})`);
  out(ctx, `checked: ${report.checks.join(', ')}: every row is on the shard the rule names, schemas agree`);
  if (report.baseline) out(ctx, `baseline ${report.baseline.id}: ${report.baseline.files.join(', ') || 'no files'}`);
  for (const s of report.shards) {
    const parts = [
      s.catalogSteps.length > 0
        ? `shardctl schema steps ${s.catalogSteps.join(', ')} installed`
        : 'shardctl schema current',
      ...(report.baseline
        ? [
            `baseline recorded: ${s.baselineRecorded.join(', ') || 'none'}${s.baselineAlready.length ? ` (already: ${s.baselineAlready.join(', ')})` : ''}`,
          ]
        : []),
    ];
    const tables = s.tables.map((t) => `${t.table} by ${t.keyColumn}`).join(', ') || 'none';
    out(ctx, `  ${s.shard}: tenant tables ${tables}; ${parts.join('; ')}`);
  }
  if (report.dryRun) out(ctx, 'dry run: nothing was written; run without --dry-run to record the rule');
  else if (report.ruleRecorded && report.alreadyAdopted)
    out(ctx, "already adopted (every tenant is in the directory): recorded this map's rule for new tenants");
  else if (report.ruleRecorded)
    out(ctx, 'adopted: the catalog records the rule; locate, query and routers trust it from now on');
  else out(ctx, 'already adopted: the catalog records this rule; nothing new to record');
}

/** `shardctl adopt [--baseline ID] [--dry-run]`: brings a fleet shardctl did not build under it. */
export function registerAdopt(program: Command, ctx: CliContext): void {
  program
    .command('adopt')
    .description(
      'bring an existing hand-sharded fleet under shardctl: check every row is on its rule shard and schemas agree, then record the rule (reads only until then)',
    )
    .option('--baseline <id>', 'record the migration files up to this id as already applied on every shard')
    .option('--dry-run', 'only check; write nothing')
    .action(async (opts: AdoptOpts, cmd: Command) => {
      const map = await mapOf(cmd, ctx);
      const report = await adoptFleet(map, {
        ...(opts.baseline !== undefined ? { baseline: opts.baseline } : {}),
        dryRun: opts.dryRun ?? false,
        timeoutMs: timeoutOf(cmd),
      });
      ctx.exitCode = report.refused ? ExitCode.Refused : ExitCode.Ok;
      if (globals(cmd).json) return outJson(ctx, report);
      if (report.refused) return showRefusal(ctx, report);
      showRecorded(ctx, report);
    });
}
