import type { Command } from 'commander';

/**
 * Examples shown after each command's `--help`, keyed by the command's path. The README shows the
 * same lines (test/unit/readme.test.ts checks that each one is there and that it parses).
 */
export const HELP_EXAMPLES: Record<string, string[]> = {
  '': [
    'shardctl dev up --shards 3 && shardctl -c shards.dev.yaml shards --check',
    'shardctl locate 123 456 --offline',
    'shardctl migrate status',
  ],
  validate: ['shardctl -c shards.yaml validate', 'shardctl validate --json'],
  shards: ['shardctl shards', 'shardctl shards --check --timeout 2000'],
  locate: ['shardctl locate 123 456 --offline', 'shardctl locate 123 --json'],
  dev: ['shardctl dev up --shards 3 && shardctl -c shards.dev.yaml shards --check', 'shardctl dev status'],
  'dev up': ['shardctl dev up --shards 3', 'shardctl dev up --shards 4 --strategy hash --out shards.hash.yaml'],
  'dev down': ['shardctl dev down', 'shardctl dev down --dir .shardctl/demo'],
  'dev status': ['shardctl dev status', 'shardctl dev status --dir .shardctl/demo'],
  migrate: [
    'shardctl migrate',
    'shardctl migrate --dry-run',
    'shardctl migrate --canary shard-0',
    'shardctl migrate --to 0007 --shard shard-1 shard-2 --concurrency 4 --fail-fast',
  ],
  'migrate status': ['shardctl migrate status', 'shardctl migrate status --check'],
  'migrate create': [
    'shardctl migrate create "add invoice index"',
    'shardctl migrate create "index invoices by status" --no-transaction',
  ],
  query: [
    `shardctl query "SELECT tenant_id, number, total FROM invoices ORDER BY total DESC LIMIT 10" --format table`,
    `shardctl query -p 123 'SELECT * FROM invoices WHERE tenant_id = $1'`,
    `shardctl query 'SELECT status, count(*) FROM invoices GROUP BY 1' --explain`,
  ],
  adopt: ['shardctl adopt --dry-run', 'shardctl adopt --baseline 0003', 'shardctl adopt --json'],
  verify: ['shardctl verify', 'shardctl verify --tenant 123 --json', 'shardctl verify --fix --yes'],
  rebalance: [
    'shardctl rebalance --tenant 123 --to shard-2 --dry-run',
    'shardctl rebalance --tenant 123 --to shard-2 --max-pause 500ms',
    'shardctl rebalance --plan --threshold 10%',
    'shardctl rebalance --apply plan.json --yes',
  ],
  moves: ['shardctl moves', 'shardctl moves --tenant 123 --json', 'shardctl moves cleanup 7'],
  'moves cleanup': ['shardctl moves cleanup 7'],
  fences: ['shardctl fences', 'shardctl fences remove --tenant 123 --shard shard-1 --yes'],
  'fences remove': ['shardctl fences remove --tenant 123 --shard shard-1 --yes'],
  exec: [
    `shardctl exec "UPDATE plans SET price = 14 WHERE name = 'team'" --reference --dry-run`,
    `shardctl exec "INSERT INTO plans VALUES (4, 'enterprise', 199)" --reference --yes`,
  ],
  recover: ['shardctl recover', 'shardctl recover --dry-run --json'],
  completion: [
    'shardctl completion bash > ~/.local/share/bash-completion/completions/shardctl',
    'shardctl completion zsh > "${fpath[1]}/_shardctl"',
    'shardctl completion fish > ~/.config/fish/completions/shardctl.fish',
  ],
};

/** The command's path without the program name: `migrate status`. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Adds the examples of {@link HELP_EXAMPLES} after the `--help` of every command that has some.
 *
 * @example
 * addExamples(program); // `shardctl query --help` then ends with "Examples:" and three lines
 */
export function addExamples(cmd: Command): void {
  const examples = HELP_EXAMPLES[commandPath(cmd)];
  if (examples) cmd.addHelpText('after', `\nExamples:\n${examples.map((e) => `  $ ${e}`).join('\n')}\n`);
  for (const sub of cmd.commands) addExamples(sub);
}
