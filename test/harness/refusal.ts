import type { ShardctlError } from '../../src/index.js';

/** The error a promise rejects with; fails the test when it resolves. */
export async function refusal(p: Promise<unknown>): Promise<ShardctlError> {
  try {
    await p;
  } catch (e) {
    return e as ShardctlError;
  }
  throw new Error('expected a refusal');
}
