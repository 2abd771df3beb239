import { Argument, type Command } from 'commander';
import { COMPLETION_SHELLS, completionScript, type CompletionShell } from '../completion.js';
import type { CliContext } from '../context.js';

/** `shardctl completion bash|zsh|fish`: prints a shell completion script for the whole program. */
export function registerCompletion(program: Command, ctx: CliContext): void {
  program
    .command('completion')
    .description('print a shell completion script (commands, subcommands and options) for bash, zsh or fish')
    .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(COMPLETION_SHELLS))
    .action((shell: CompletionShell) => {
      ctx.stdout.write(completionScript(program, shell));
    });
}
