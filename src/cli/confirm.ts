import { createInterface } from 'node:readline/promises';
import type { CliContext } from './context.js';

/**
 * Asks a yes/no question on the terminal. Returns `undefined` when there is no terminal to ask on
 * (the caller must then refuse rather than guess).
 */
export async function confirm(
  ctx: CliContext,
  question: string,
  input: NodeJS.ReadableStream & { isTTY?: boolean } = process.stdin,
): Promise<boolean | undefined> {
  if (!input.isTTY || !ctx.stderr.isTTY) return undefined;
  const rl = createInterface({ input, output: ctx.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}
