import { describe, expect, it } from 'vitest';
import { jsonValue } from '../../src/cli/commands/query.js';
import { parseArrayText, parseRecordText } from '../../src/cli/render.js';
import type { ValueShape } from '../../src/index.js';

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

  it('parses PostgreSQL row text', () => {
    expect(parseRecordText('()')).toEqual([]);
    expect(parseRecordText('(1,,"",x)')).toEqual(['1', null, '', 'x']);
    expect(parseRecordText('("a,b","say ""hi""","back\\\\slash","(nested,row)")')).toEqual([
      'a,b',
      'say "hi"',
      'back\\slash',
      '(nested,row)',
    ]);
    expect(parseRecordText('(7,"{1,2}")')).toEqual(['7', '{1,2}']);
  });

  const int8: ValueShape = { kind: 'scalar', typeOid: 20 };
  const text: ValueShape = { kind: 'scalar', typeOid: 25 };
  const numeric: ValueShape = { kind: 'scalar', typeOid: 1700 };
  const pair: ValueShape = {
    kind: 'composite',
    attributes: [
      { name: 'n', shape: int8 },
      { name: 'label', shape: text },
      { name: 'amounts', shape: { kind: 'array', element: numeric } },
    ],
  };

  it('renders composite values as objects whose members keep their types', () => {
    const big = '9223372036854775807';
    expect(JSON.parse(jsonValue(`(${big},"a b","{1.50,NULL}")`, { typeOid: 16400, shape: pair }))).toEqual({
      n: Number(big),
      label: 'a b',
      amounts: [1.5, null],
    });
    // exact: the int8 is written as PostgreSQL printed it, not through a float
    expect(jsonValue(`(${big},x,{})`, { typeOid: 16400, shape: pair })).toBe(`{"n":${big},"label":"x","amounts":[]}`);
    expect(jsonValue('(,,)', { typeOid: 16400, shape: pair })).toBe('{"n":null,"label":null,"amounts":null}');
    expect(jsonValue(null, { typeOid: 16400, shape: pair })).toBe('null');
  });

  it('renders arrays of composites, nested composites and anonymous records', () => {
    const many: ValueShape = { kind: 'array', element: pair };
    expect(JSON.parse(jsonValue('{"(1,a,{2})",NULL,"(2,\\"b c\\",{})"}', { typeOid: 16399, shape: many }))).toEqual([
      { n: 1, label: 'a', amounts: [2] },
      null,
      { n: 2, label: 'b c', amounts: [] },
    ]);
    const outer: ValueShape = {
      kind: 'composite',
      attributes: [
        { name: 'p', shape: pair },
        { name: 'ok', shape: { kind: 'scalar', typeOid: 16 } },
      ],
    };
    expect(JSON.parse(jsonValue('("(3,z,{})",t)', { typeOid: 16401, shape: outer }))).toEqual({
      p: { n: 3, label: 'z', amounts: [] },
      ok: true,
    });
    // PostgreSQL does not send an anonymous record's field types: its fields stay text
    expect(JSON.parse(jsonValue('(1,,"x y")', { typeOid: 2249, shape: { kind: 'record' } }))).toEqual([
      '1',
      null,
      'x y',
    ]);
  });
});
