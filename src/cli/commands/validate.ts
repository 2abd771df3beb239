import type { Command } from 'commander';
import { describeShardMap } from '../../index.js';
import { globals, mapOf, out, outJson, outTable, type CliContext } from '../context.js';

/** `shardctl validate`: checks the map and prints a summary. */
export function registerValidate(program: Command, ctx: CliContext): void {
  program
    .command('validate')
    .description('check the shard map and print a summary (strategy, shards, bucket coverage)')
    .action(async (_opts, cmd: Command) => {
      const map = await mapOf(cmd, ctx);
      const summary = describeShardMap(map);
      if (globals(cmd).json) return outJson(ctx, { valid: true, ...summary });
      out(ctx, `${map.file}: valid`);
      await outTable(
        ctx,
        ['setting', 'value'],
        [
          ['strategy', summary.strategy],
          ['shard key', summary.shardKey],
          ['shards', summary.shards],
          ['catalog', summary.catalog],
          ...(summary.buckets
            ? [
                [
                  'buckets',
                  `${summary.buckets.total}, all covered: ${Object.entries(summary.buckets.perShard)
                    .map(([s, n]) => `${s} ${n}`)
                    .join(', ')}`,
                ],
              ]
            : []),
          ['migrations', summary.migrations],
          [
            'tenant tables',
            summary.tables === 'auto' ? 'every table with the shard-key column' : summary.tables.join(', '),
          ],
          ['reference tables', summary.reference.join(', ') || '(none)'],
        ],
      );
    });
}
