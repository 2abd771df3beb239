/**
 * Whether an error is a fence rejection: the tenant's writes are refused on this shard because it is
 * moving (an online move's short pause, or a fenced move) or moved away. An app retries such a write
 * after `router.refresh()`, which routes it to the tenant's shard once the move has switched.
 *
 * @example
 * try { await write(); } catch (e) { if (isFenceError(e)) { await router.refresh(); await write(); } else throw e; }
 */
export function isFenceError(e: unknown): boolean {
  const err = e as { code?: string; message?: string; pg?: { code?: string } } | null;
  const code = err?.code === 'P0001' || err?.pg?.code === 'P0001';
  return code && /^shardctl: tenant .* is fenced on this shard/.test(err?.message ?? '');
}

/**
 * The shard a fence error says the tenant moves or moved to (the fence's target, named in its hint),
 * or undefined for another error or a fence without a target.
 *
 * @example
 * fenceTarget(e) // 'shard-2'
 */
export function fenceTarget(e: unknown): string | undefined {
  if (!isFenceError(e)) return undefined;
  const err = e as { hint?: string; pg?: { hint?: string } };
  const hint = err.hint ?? err.pg?.hint ?? '';
  return /moves or moved to (.+?); route through/.exec(hint)?.[1];
}
