import { Command, CommanderError, Option } from 'commander';
import { ExitCode, redact, SHARDCTL_VERSION, ShardctlError } from '../index.js';
import { err, outJson, type CliContext } from './context.js';
import { durationOption } from './options.js';
import { registerDev } from './commands/dev.js';
import { registerLocate } from './commands/locate.js';
import { registerShards } from './commands/shards.js';
import { registerValidate } from './commands/validate.js';
import { registerVerify } from './commands/verify.js';
import { registerRebalance } from './commands/rebalance.js';
import { registerMoves } from './commands/moves.js';
import { registerFences } from './commands/fences.js';
import { registerMigrate } from './commands/migrate.js';
import { registerQuery } from './commands/query.js';
import { registerCompletion } from './commands/completion.js';
import { registerAdopt } from './commands/adopt.js';
import { registerRecover } from './commands/recover.js';
import { registerExec } from './commands/exec.js';
import { addExamples, commandPath } from './help.js';

/** Every command module registers itself here; each keeps its own options and rendering. */
const COMMANDS: ((program: Command, ctx: CliContext) => void)[] = [
  registerValidate,
  registerShards,
  registerLocate,
  registerDev,
  registerVerify,
  registerRebalance,
  registerMoves,
  registerFences,
  registerMigrate,
  registerAdopt,
  registerQuery,
  registerExec,
  registerRecover,
  registerCompletion,
];

/**
 * Builds the commander program. Global options are accepted before or after the command name.
 */
export function buildProgram(ctx: CliContext): Command {
  const program = new Command('shardctl')
    .description(
      'Run application-level sharded PostgreSQL: shard map, locate, migrations, cross-shard queries, tenant moves.',
    )
    .version(SHARDCTL_VERSION, '-V, --version')
    .option('-c, --config <file>', 'shard map (default: $SHARDCTL_CONFIG, else ./shards.yaml)')
    .option('--json', 'print one JSON document on stdout')
    .option('--no-progress', 'no live progress (also off when stderr is not a TTY or CI is set)')
    .addOption(
      new Option('--timeout <duration>', 'connection timeout per shard, e.g. 5000 or 5s (default 5s)').argParser(
        durationOption('--timeout', { minMs: 0 }),
      ),
    )
    .option('-v, --verbose', 'more detail, including stack traces of internal errors')
    .showHelpAfterError('(run shardctl --help for usage)')
    // Each command's --help lists -c, --json and the other global options too: its examples use them.
    .configureHelp({ showGlobalOptions: true })
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.stdout.write(s),
      writeErr: (s) => ctx.stderr.write(s),
    });
  for (const register of COMMANDS) register(program, ctx);
  for (const sub of program.commands) applyExitOverride(sub, ctx);
  addExamples(program);
  return program;
}

function applyExitOverride(cmd: Command, ctx: CliContext): void {
  cmd.exitOverride().configureOutput({ writeOut: (s) => ctx.stdout.write(s), writeErr: (s) => ctx.stderr.write(s) });
  // A usage error points at the help of the command that refused it, where its examples are.
  cmd.showHelpAfterError(`(run shardctl ${commandPath(cmd)} --help for usage and examples)`);
  for (const sub of cmd.commands) applyExitOverride(sub, ctx);
}

/**
 * `shardctl query ... | head` closes stdout early: that is the reader's choice, not an error, so the
 * CLI ends at once without a stack trace (as `cat` does), with the exit code set so far.
 */
function stopQuietlyWhenStdoutCloses(ctx: CliContext): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(ctx.exitCode);
  });
}

/**
 * Runs the CLI and returns the exit code (the `bin/shardctl` wrapper sets it). Never throws: user
 * errors print a message (and hint) without a stack trace; internal errors print a stack only with -v.
 */
export async function main(argv: string[], io: Partial<CliContext> = {}): Promise<number> {
  const ctx: CliContext = {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
    exitCode: ExitCode.Ok,
  };
  if (!io.stdout) stopQuietlyWhenStdoutCloses(ctx);
  const program = buildProgram(ctx);
  const wantsJson = argv.includes('--json');
  const verbose = argv.includes('-v') || argv.includes('--verbose');
  try {
    await program.parseAsync(argv);
    return ctx.exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version end through exitOverride too; they are not errors
      if (e.exitCode === 0) return ExitCode.Ok;
      // A bad option value (an option parser refused it): commander printed it; --json still gets a document.
      if (wantsJson && e.code === 'commander.invalidArgument')
        outJson(ctx, { ok: false, error: 'USAGE', message: e.message.replace(/^error: /, '') });
      return ExitCode.Usage;
    }
    if (e instanceof ShardctlError) {
      if (wantsJson) outJson(ctx, { ok: false, ...e.toJSON() });
      err(ctx, `error: ${e.message}`);
      if (e.pg?.detail) err(ctx, `detail: ${e.pg.detail}`);
      if (e.hint) err(ctx, `hint: ${e.hint}`);
      if (verbose && e.cause instanceof Error) err(ctx, `cause: ${redact(e.cause.stack ?? e.cause.message)}`);
      return e.exitCode;
    }
    const error = e instanceof Error ? e : new Error(String(e));
    if (wantsJson) outJson(ctx, { ok: false, error: 'INTERNAL', message: redact(error.message) });
    err(ctx, `internal error: ${error.message}`);
    err(ctx, verbose ? (error.stack ?? '') : 'run again with -v for details; please report it');
    return ExitCode.Failed;
  }
}
