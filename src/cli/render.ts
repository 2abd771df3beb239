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

/** Element type of PostgreSQL's built-in array types, by array type oid. */
export const ARRAY_ELEMENT: Readonly<Record<number, number>> = {
  1000: 16, // bool[]
  1005: 21, // int2[]
  1007: 23, // int4[]
  1016: 20, // int8[]
  1021: 700, // float4[]
  1022: 701, // float8[]
  1231: 1700, // numeric[]
  1028: 26, // oid[]
  1009: 25, // text[]
  1015: 1043, // varchar[]
  1014: 1042, // bpchar[]
  1002: 18, // char[]
  1003: 19, // name[]
  199: 114, // json[]
  3807: 3802, // jsonb[]
  2951: 2950, // uuid[]
  1182: 1082, // date[]
  1115: 1114, // timestamp[]
  1185: 1184, // timestamptz[]
};

/** A parsed array literal: nested lists of element texts (null for NULL). */
type ArrayValue = (string | null | ArrayValue)[];

/**
 * Parses PostgreSQL's text form of an array (`{1,NULL,"a b"}`, nested `{{1,2},{3,4}}`, an optional
 * `[0:1]=` bounds prefix) into nested lists of element texts.
 *
 * @example
 * parseArrayText('{1,NULL,"a,b"}') // ['1', null, 'a,b']
 */
export function parseArrayText(text: string): ArrayValue {
  let i = text.startsWith('[') ? text.indexOf('=') + 1 : 0;
  const list = (): ArrayValue => {
    const out: ArrayValue = [];
    i++; // '{'
    while (i < text.length && text[i] !== '}') {
      if (text[i] === '{') out.push(list());
      else if (text[i] === '"') {
        let v = '';
        for (i++; text[i] !== '"'; i++) v += text[i] === '\\' ? text[++i] : text[i];
        i++;
        out.push(v);
      } else {
        const start = i;
        while (text[i] !== ',' && text[i] !== '}') i++;
        const v = text.slice(start, i).trim();
        out.push(v.toUpperCase() === 'NULL' ? null : v);
      }
      if (text[i] === ',') i++;
    }
    i++; // '}'
    return out;
  };
  return list();
}

/**
 * Parses PostgreSQL's text form of a row value (`(1,,"a b","say ""hi""")`) into its fields' texts:
 * an empty unquoted field is NULL, `""` is an empty string; quotes may start anywhere in a field, and
 * inside them `""` and a backslash escape the next character, as record_in reads them.
 *
 * @example
 * parseRecordText('(1,,"a,b","")') // ['1', null, 'a,b', '']
 */
export function parseRecordText(text: string): (string | null)[] {
  const out: (string | null)[] = [];
  let i = 1; // '('
  if (text[i] === ')') return out;
  for (;;) {
    let v = '';
    let quoted = false;
    let anyQuote = false;
    for (; i < text.length && (quoted || (text[i] !== ',' && text[i] !== ')')); i++) {
      const ch = text[i]!;
      if (ch === '\\') v += text[++i] ?? '';
      else if (ch !== '"') v += ch;
      else if (quoted && text[i + 1] === '"') v += text[++i];
      else {
        quoted = !quoted;
        anyQuote = true;
      }
    }
    out.push(v === '' && !anyQuote ? null : v);
    if (text[i] !== ',') return out;
    i++;
  }
}
