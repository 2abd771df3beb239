/** Column widths that make a table fit the terminal (cli-table3 then wraps the cells to them). */

/** Narrowest a shrunk column gets, padding included: a word or a number still reads. */
const MIN_COLUMN = 8;
/** Lines a wrapped cell may take on a terminal before it is cut with an ellipsis. */
export const MAX_CELL_LINES = 4;

/**
 * Splits `budget` between columns that ask for `demands`: those asking less than an equal share get
 * what they ask, the others share the rest equally (water-filling).
 */
function shareOut(demands: number[], budget: number): number[] {
  const given = demands.map(() => 0);
  let left = budget;
  let open = demands.map((_, i) => i).filter((i) => demands[i]! > 0);
  while (open.length > 0) {
    const share = Math.floor(left / open.length);
    const settled = open.filter((i) => demands[i]! <= share);
    if (settled.length === 0) {
      for (const i of open) given[i] = share;
      return given;
    }
    for (const i of settled) {
      given[i] = demands[i]!;
      left -= demands[i]!;
    }
    open = open.filter((i) => demands[i]! > share);
  }
  return given;
}

/**
 * Widths (padding included) for columns of the given natural widths so that the table, with its
 * `n + 1` borders, fits in `columns` characters. Each column first gets its `minimum` (its longest
 * word, so that headers and short values do not break), then the room left goes to the columns
 * that want more, shared fairly; when even the minimums do not fit, all columns share the width.
 * Returns `undefined` when the table already fits.
 *
 * @example
 * fitColumnWidths([10, 250], 80) // [10, 67]
 */
export function fitColumnWidths(natural: number[], columns: number, minimum: number[] = []): number[] | undefined {
  const borders = natural.length + 1;
  if (natural.reduce((a, b) => a + b, 0) + borders <= columns) return undefined;
  const budget = Math.max(columns - borders, MIN_COLUMN * natural.length);
  const floor = natural.map((n, i) => Math.min(n, Math.max(MIN_COLUMN, minimum[i] ?? MIN_COLUMN)));
  const floorTotal = floor.reduce((a, b) => a + b, 0);
  // Not even the longest words fit: the columns with long words give up room first.
  if (floorTotal > budget) return shareOut(floor, budget).map((w) => Math.max(MIN_COLUMN, w));
  const extra = shareOut(
    natural.map((n, i) => n - floor[i]!),
    budget - floorTotal,
  );
  return floor.map((f, i) => f + extra[i]!);
}

/** Longest word a column should not break, padding included, at most `cap` (a URL may break). */
export function longestWord(texts: string[], cap = 24): number {
  const words = texts.flatMap((t) => t.split(/\s+/));
  return Math.min(cap, Math.max(0, ...words.map((w) => w.length)) + 2);
}

/**
 * A cell's text for a column `width` wide (padding included): words longer than the column are
 * broken across lines (cli-table3 would cut them), and the whole is cut so that it takes at most
 * {@link MAX_CELL_LINES} lines, ending with `…`.
 *
 * @example
 * cutCell('x'.repeat(100), 12) // 'xxxxxxxxx…' (4 lines of 10 characters at most)
 */
export function cutCell(text: string, width: number): string {
  const room = Math.max(1, width - 2);
  const max = room * MAX_CELL_LINES;
  const cut = text.length > max ? `${text.slice(0, max - 1)}…` : text;
  return cut.replace(new RegExp(`\\S{${room + 1},}`, 'g'), (word) =>
    word.match(new RegExp(`.{1,${room}}`, 'g'))!.join('\n'),
  );
}

/** The widest line of a cell, the padding of cli-table3 (one space each side) included. */
export function naturalWidth(text: string): number {
  return Math.max(0, ...text.split('\n').map((l) => l.length)) + 2;
}
