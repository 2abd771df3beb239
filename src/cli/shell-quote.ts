/**
 * One word as a POSIX shell needs it typed: as is when it has no special character, else in single
 * quotes (a quote inside becomes `'\''`), so that `$1`, `*` and spaces reach the program unchanged.
 *
 * @example
 * shellQuote('shards.yaml') // 'shards.yaml'
 * shellQuote('SELECT * FROM t WHERE id = $1') // "'SELECT * FROM t WHERE id = $1'"
 */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * A command line for a POSIX shell: each word quoted as {@link shellQuote} does.
 *
 * @example
 * shellLine(['shardctl', 'query', '-p', '5', 'SELECT $1']) // "shardctl query -p 5 'SELECT $1'"
 */
export function shellLine(words: string[]): string {
  return words.map(shellQuote).join(' ');
}
