import { describe, expect, it } from 'vitest';
import { jsonValue } from '../../src/cli/commands/query.js';
import { parseArrayText } from '../../src/cli/render.js';

// --format json/ndjson: arrays of built-in types come out as JSON arrays whose elements keep their
// types (int8 and numeric as exact JSON numbers, text as strings, NULL as null, nested dimensions).
describe('JSON rendering of query values', () => {
  it('parses PostgreSQL array text', () => {
    expect(parseArrayText('{}')).toEqual([]);
    expect(parseArrayText('{1,NULL,3}')).toEqual(['1', null, '3']);
    expect(parseArrayText('{"a,b","say \\"hi\\"","NULL",x}')).toEqual(['a,b', 'say "hi"', 'NULL', 'x']);
    expect(parseArrayText('{{1,2},{3,4}}')).toEqual([
      ['1', '2'],
      ['3', '4'],
    ]);
    expect(parseArrayText('[0:1]={7,8}')).toEqual(['7', '8']);
  });

  it('renders arrays as JSON arrays with exact numbers', () => {
    const big = '9223372036854775807';
    expect(jsonValue(`{${big},-1,NULL}`, { typeOid: 1016 })).toBe(`[${big},-1,null]`);
    expect(jsonValue('{0.100000000000000000001,2}', { typeOid: 1231 })).toBe('[0.100000000000000000001,2]');
    expect(JSON.parse(jsonValue('{"a b",NULL,"{x}"}', { typeOid: 1009 }))).toEqual(['a b', null, '{x}']);
    expect(JSON.parse(jsonValue('{{1,2},{3,4}}', { typeOid: 1007 }))).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(JSON.parse(jsonValue('{t,f}', { typeOid: 1000 }))).toEqual([true, false]);
    expect(JSON.parse(jsonValue('{"{\\"a\\": 1}"}', { typeOid: 3807 }))).toEqual([{ a: 1 }]);
    expect(JSON.parse(jsonValue('{NaN,1.5}', { typeOid: 1022 }))).toEqual(['NaN', 1.5]);
    // scalars as before; an unknown type stays its text
    expect(jsonValue('{1,2}', { typeOid: 25 })).toBe('"{1,2}"');
    expect(jsonValue('42', { typeOid: 20 })).toBe('42');
  });
});
