/**
 * SQL text helpers shared by every layer above db: identifier and literal quoting, and the one cast of
 * a shard-key type. Anything that splices a name or a value into SQL goes through these.
 *
 * @example
 * `SELECT ${quoteIdent('tenant_id')} FROM ${quoteTable('public.users')}` // SELECT "tenant_id" FROM "public"."users"
 */

/** Quotes a possibly schema-qualified table name (`schema.table` or `table`). */
export function quoteTable(name: string): string {
  return name
    .split('.')
    .map((p) => `"${p.replace(/"/g, '""')}"`)
    .join('.');
}

/** Quotes one identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Quotes a string literal. One with a backslash is written as `E'...'` (backslashes doubled), which
 * reads the same whatever the server's `standard_conforming_strings`.
 *
 * @example
 * quoteLiteral("it's") // 'it''s'
 */
export function quoteLiteral(text: string): string {
  const quoted = text.replace(/'/g, "''");
  return text.includes('\\') ? `E'${quoted.replace(/\\/g, '\\\\')}'` : `'${quoted}'`;
}

/** The SQL type a shard-key type casts to (`bigint` as `int8`). */
export function keyCast(keyType: string): string {
  return keyType === 'bigint' ? 'int8' : keyType;
}
