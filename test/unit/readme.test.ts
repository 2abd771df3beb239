import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { HELP_EXAMPLES } from '../../src/cli/help.js';
import type { CliContext } from '../../src/cli/context.js';

const README = readFileSync(path.resolve(import.meta.dirname, '..', '..', 'README.md'), 'utf8');

/** Fenced blocks of the README: their info string and lines. Throws on a fence left open. */
function fencedBlocks(markdown: string): { info: string; lines: string[]; startLine: number }[] {
  const blocks: { info: string; lines: string[]; startLine: number }[] = [];
  let open: { info: string; lines: string[]; startLine: number } | undefined;
  markdown.split('\n').forEach((line, i) => {
    const fence = /^\s*```(.*)$/.exec(line);
    if (!fence) return open?.lines.push(line);
    if (!open) return (open = { info: fence[1]!.trim(), lines: [], startLine: i + 1 });
    // A closing fence carries nothing after it: text there would turn the rest of the page into code.
    if (fence[1]!.trim() !== '') throw new Error(`README.md:${i + 1}: text after a closing fence: ${line}`);
    blocks.push(open);
    open = undefined;
  });
  if (open) throw new Error(`README.md:${open.startLine}: fence never closed`);
  return blocks;
}

/**
 * The words of one POSIX shell command line as the shell hands them to the program: single and
 * double quotes, backslash escapes; stops at an unquoted `#` comment. `&&` and `>` stay words.
 */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === "'") {
      const end = line.indexOf("'", i + 1);
      word = (word ?? '') + line.slice(i + 1, end);
      i = end;
    } else if (ch === '"') {
      let j = i + 1;
      word ??= '';
      for (; line[j] !== '"'; j++) word += line[j] === '\\' && /[$`"\\]/.test(line[j + 1]!) ? line[++j] : line[j];
      i = j;
    } else if (ch === '\\') word = (word ?? '') + line[++i];
    else if (/\s/.test(ch)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (ch === '#' && word === undefined) break;
    else word = (word ?? '') + ch;
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** The shardctl invocations of a shell line: split at `&&`, redirections dropped, `npx` allowed. */
function invocations(line: string): string[][] {
  const words = shellWords(line.replace(/^\s*(\$|- run:)\s*/, ''));
  const commands: string[][] = [[]];
  for (const w of words)
    if (w === '&&') commands.push([]);
    else commands[commands.length - 1]!.push(w);
  return commands
    .map((c) => (c[0] === 'npx' ? c.slice(1) : c))
    .filter((c) => c[0] === 'shardctl')
    .map((c) => {
      const redirect = c.findIndex((w) => /^\d?>/.test(w));
      return (redirect >= 0 ? c.slice(0, redirect) : c).slice(1);
    });
}

const sink = () => new Writable({ write: (_c, _e, cb) => cb() });

/** Parses argv with the CLI's own program, every action replaced by a no-op; throws on a usage error. */
async function parseWithCli(args: string[]): Promise<void> {
  const ctx: CliContext = { stdout: sink(), stderr: sink(), env: {}, exitCode: 0 };
  const program = buildProgram(ctx);
  const stub = (cmd: Command) => {
    cmd.action(() => undefined);
    cmd.commands.forEach(stub);
  };
  program.commands.forEach(stub);
  await program.parseAsync(['node', 'shardctl', ...args]);
}

const shellLines = fencedBlocks(README)
  .filter((b) => ['sh', 'bash', 'shell', 'yaml'].includes(b.info))
  .flatMap((b) => b.lines.map((text, i) => ({ text, line: b.startLine + 1 + i })))
  .filter((l) => /(^|\s|\$ )(npx )?shardctl /.test(l.text));

describe('README', () => {
  it('has balanced code fences with nothing after a closing one', () => {
    expect(fencedBlocks(README).length).toBeGreaterThan(10);
  });

  it('finds the shell examples it checks', () => {
    expect(shellLines.length).toBeGreaterThan(30);
    expect(invocations(`$ shardctl query -p 5 'SELECT $1' && npx shardctl validate > out.txt # c`)).toEqual([
      ['query', '-p', '5', 'SELECT $1'],
      ['validate'],
    ]);
  });

  it.each(shellLines)('README.md:$line parses with the CLI: $text', async ({ text }) => {
    for (const args of invocations(text)) await expect(parseWithCli(args)).resolves.toBeUndefined();
  });

  it('an unknown option or command fails the parse (so the check above can fail)', async () => {
    await expect(parseWithCli(['query', '--no-such-flag', 'SELECT 1'])).rejects.toBeInstanceOf(CommanderError);
    await expect(parseWithCli(['frobnicate'])).rejects.toBeInstanceOf(CommanderError);
  });

  it.each(Object.entries(HELP_EXAMPLES))('shows the --help examples of "%s"', (_cmd, examples) => {
    for (const e of examples) expect(README).toContain(`$ ${e}`);
  });
});
