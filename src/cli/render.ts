/** Text drawing shared by the commands that show sizes side by side. */

/**
 * A horizontal bar of `width` cells for value/max, in eighths of a cell.
 *
 * @example
 * bar(50, 100, 4) // '██'
 */
export function bar(value: number, max: number, width: number): string {
  const eighths = Math.round((value / (max || 1)) * width * 8);
  const full = Math.floor(eighths / 8);
  const rest = eighths % 8;
  return '█'.repeat(full) + (rest > 0 ? ' ▏▎▍▌▋▊▉'[rest] : '');
}
