/** Column widths that make a table fit the terminal (cli-table3 then wraps the cells to them). */

/** Narrowest a shrunk column gets, padding included: a word or a number still reads. */
const MIN_COLUMN = 8;
/** Lines a wrapped cell may take on a terminal before it is cut with an ellipsis. */
export const MAX_CELL_LINES = 4;

/**
 * Widths (padding included) for columns of the given natural widths so that the table, with its
 * `n + 1` borders, fits in `columns` characters: columns that fit their fair share keep their width,
 * the wider ones share what is left equally. Returns `undefined` when the table already fits.
 *
 * @example
 * fitColumnWidths([10, 250], 80) // [10, 67]
 */
export function fitColumnWidths(natural: number[], columns: number): number[] | undefined {
  const borders = natural.length + 1;
  if (natural.reduce((a, b) => a + b, 0) + borders <= columns) return undefined;
  const widths = [...natural];
  let budget = Math.max(columns - borders, MIN_COLUMN * natural.length);
  let open = natural.map((_, i) => i);
  // Water-filling: settle the columns narrower than the fair share, then split the rest evenly.
  for (;;) {
    const share = Math.floor(budget / open.length);
    const fits = open.filter((i) => natural[i]! <= share);
    if (fits.length === 0) {
      for (const i of open) widths[i] = Math.max(MIN_COLUMN, share);
      return widths;
    }
    for (const i of fits) budget -= natural[i]!;
    open = open.filter((i) => natural[i]! > share);
    if (open.length === 0) return widths;
  }
}

/**
 * A cell's text cut so that, wrapped to `width` (padding included), it takes at most
 * {@link MAX_CELL_LINES} lines; the cut ends with `…`.
 *
 * @example
 * cutCell('x'.repeat(100), 12) // 'xxxxxxxxx…' (4 lines of 10 characters at most)
 */
export function cutCell(text: string, width: number): string {
  const max = Math.max(1, (width - 2) * MAX_CELL_LINES);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The widest line of a cell, the padding of cli-table3 (one space each side) included. */
export function naturalWidth(text: string): number {
  return Math.max(0, ...text.split('\n').map((l) => l.length)) + 2;
}
