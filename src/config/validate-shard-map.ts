import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { registerSecret } from '../redact.js';
import { interpolateEnv } from './interpolate-env.js';
import { parseDuration } from './units.js';
import type {
  BucketRange,
  MigrateSettings,
  PlacementRule,
  RouterSettings,
  Shard,
  ShardKeyType,
  ShardMap,
} from './shard-map.js';

/** Options of {@link parseShardMap}. */
export interface ParseShardMapOptions {
  /** File name used in messages and to resolve relative paths. Default `<inline>` (paths relative to the working directory). */
  file?: string;
  /** Environment for `${VAR}` substitution. Default `process.env`. */
  env?: Record<string, string | undefined>;
}

type PathPart = string | number;

/** Names and server endpoints of the shards read so far, with their index: duplicates are problems. */
interface SeenShards {
  names: Map<string, number>;
  endpoints: Map<string, number>;
}

const TOP_KEYS = [
  'version',
  'shardKey',
  'placement',
  'shards',
  'catalog',
  'migrations',
  'tables',
  'reference',
  'migrate',
  'routers',
];
const SHARD_KEYS = ['name', 'url', 'replicationUrl', 'buckets'];
const KEY_TYPES: ShardKeyType[] = ['bigint', 'text', 'uuid'];
const IDENT = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/;

/**
 * Parses and validates a shard map from YAML text. Collects every problem with its line, column and
 * key path, then throws one {@link ConfigError} (exit code 2) listing them all.
 *
 * @example
 * const map = parseShardMap(yamlText, { file: 'shards.yaml', env: { SHARD0_PASSWORD: 'x' } });
 */
export function parseShardMap(text: string, options: ParseShardMapOptions = {}): ShardMap {
  const file = options.file ?? '<inline>';
  const env = options.env ?? process.env;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const problems: ConfigProblem[] = [];
  const at = (offset: number | undefined) => {
    if (offset === undefined) return { line: 1, column: 1 };
    const p = lineCounter.linePos(offset);
    return { line: p.line, column: p.col };
  };
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      problems.push({ ...at(e.pos[0]), path: '', message: `malformed YAML: ${e.message.split('\n')[0]}` });
    }
    throw new ConfigError(file, problems);
  }
  const v = new Validator(doc, at, problems, env);
  const map = v.validate(file);
  if (problems.length > 0 || map === undefined) throw new ConfigError(file, problems);
  return map;
}

class Validator {
  constructor(
    private readonly doc: Document,
    private readonly at: (offset: number | undefined) => { line: number; column: number },
    private readonly problems: ConfigProblem[],
    private readonly env: Record<string, string | undefined>,
  ) {}

  private node(p: PathPart[]): Node | undefined {
    return (p.length === 0 ? this.doc.contents : this.doc.getIn(p, true)) as Node | undefined;
  }

  private problem(p: PathPart[], message: string, keyOf = false): void {
    let offset: number | undefined;
    if (keyOf && p.length > 0) {
      const parent = this.node(p.slice(0, -1));
      if (isMap(parent)) {
        const pair = parent.items.find((i) => isScalar(i.key) && i.key.value === p[p.length - 1]);
        offset = (pair?.key as Node | undefined)?.range?.[0];
      }
    }
    if (offset === undefined) {
      // Point at the closest node that exists: a missing key is reported at its parent.
      for (let i = p.length; i >= 0 && offset === undefined; i--) offset = this.node(p.slice(0, i))?.range?.[0];
    }
    this.problems.push({ ...this.at(offset), path: formatPath(p), message });
  }

  private rejectUnknownKeys(p: PathPart[], allowed: string[]): void {
    const n = this.node(p);
    if (!isMap(n)) return;
    for (const item of n.items) {
      const key = isScalar(item.key) ? String(item.key.value) : String(item.key);
      if (!allowed.includes(key)) {
        const hint = closest(key, allowed);
        this.problem(
          [...p, key],
          `unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : ''}; allowed: ${allowed.join(', ')}`,
          true,
        );
      }
    }
  }

  private value(p: PathPart[]): unknown {
    const n = this.node(p);
    if (n === undefined) return undefined;
    return isScalar(n) ? n.value : (n as { toJSON(): unknown }).toJSON();
  }

  private string(p: PathPart[], opts: { required?: boolean; interpolate?: boolean } = {}): string | undefined {
    const raw = this.value(p);
    if (raw === undefined || raw === null) {
      if (opts.required) this.problem(p, 'is required');
      return undefined;
    }
    if (typeof raw !== 'string' && typeof raw !== 'number') {
      this.problem(p, `must be a string, got ${describe(raw)}`);
      return undefined;
    }
    const s = String(raw);
    if (!opts.interpolate) return s;
    const r = interpolateEnv(s, this.env);
    for (const name of r.missing) {
      this.problem(p, `environment variable ${name} is not set (export it, or write \${${name}:-default})`);
    }
    return r.missing.length > 0 ? undefined : r.value;
  }

  validate(file: string): ShardMap | undefined {
    const root = this.doc.contents;
    if (!isMap(root)) {
      this.problem(
        [],
        root === null
          ? 'the file is empty: a shard map needs version, shardKey, placement and shards'
          : 'must be a mapping of keys (version, shardKey, placement, shards, ...)',
      );
      return undefined;
    }
    this.rejectUnknownKeys([], TOP_KEYS);

    const version = this.value(['version']);
    if (version === undefined) this.problem(['version'], 'is required (write version: 1)');
    else if (version !== 1)
      this.problem(['version'], `unsupported version ${JSON.stringify(version)}: this shardctl reads version 1`);

    const shardKey = this.shardKey();
    const placement = this.placement();
    const shards = this.shards(placement);
    if (placement?.strategy === 'modulo' && shardKey && shardKey.type !== 'bigint') {
      this.problem(
        ['shardKey', 'type'],
        `the modulo strategy needs an integer shard key, but the type is ${shardKey.type}; use strategy: hash for text and uuid keys`,
      );
    }
    if (placement?.strategy === 'hash' && shards) this.checkBucketCoverage(placement.buckets, shards);

    let catalog = this.string(['catalog']);
    if (catalog !== undefined && shards && !shards.some((s) => s.name === catalog)) {
      this.problem(
        ['catalog'],
        `names no shard of this map ("${catalog}"); shards: ${shards.map((s) => s.name).join(', ')}`,
      );
    }
    catalog ??= shards?.[0]?.name;

    const baseDir = file === '<inline>' ? process.cwd() : path.dirname(path.resolve(file));
    const migrationsRaw = this.string(['migrations'], { interpolate: true }) ?? './migrations';
    const migrations = path.resolve(baseDir, migrationsRaw);
    const tables =
      this.node(['tables']) === undefined || this.value(['tables']) === null ? null : this.tableList(['tables']);
    const reference = this.node(['reference']) === undefined ? [] : (this.tableList(['reference']) ?? []);
    this.checkTableLists(shardKey, tables ?? null, reference);
    const migrate = this.migrateSettings();
    const routers = this.routerSettings();

    if (this.problems.length > 0 || !shardKey || !placement || !shards || !catalog) return undefined;
    return {
      version: 1,
      file,
      shardKey,
      placement,
      shards,
      catalog,
      migrations,
      tables: tables ?? null,
      reference,
      migrate,
      routers,
    };
  }

  private shardKey(): ShardMap['shardKey'] | undefined {
    const p = ['shardKey'];
    const n = this.node(p);
    if (n === undefined) {
      this.problem(p, 'is required, for example shardKey: { column: tenant_id, type: bigint }');
      return undefined;
    }
    if (!isMap(n)) {
      this.problem(p, 'must be a mapping with column and type');
      return undefined;
    }
    this.rejectUnknownKeys(p, ['column', 'type', 'columns']);
    const column = this.string([...p, 'column'], { required: true });
    if (column !== undefined && !IDENT.test(column))
      this.problem([...p, 'column'], `"${column}" is not a plain column name`);
    const type = this.string([...p, 'type']) ?? 'bigint';
    if (!KEY_TYPES.includes(type as ShardKeyType)) {
      this.problem([...p, 'type'], `must be one of ${KEY_TYPES.join(', ')}, got "${type}"`);
      return undefined;
    }
    const columns = this.keyColumns([...p, 'columns']);
    return column === undefined ? undefined : { column, type: type as ShardKeyType, columns };
  }

  /** `shardKey.columns`: table -> the column holding its tenant, for tables that do not use `column`. */
  private keyColumns(p: PathPart[]): Record<string, string> {
    const out: Record<string, string> = {};
    const n = this.node(p);
    if (n === undefined) return out;
    if (!isMap(n)) {
      this.problem(p, 'must be a mapping of table: column, for example columns: { tenants: id }');
      return out;
    }
    for (const [table, col] of Object.entries(this.value(p) as Record<string, unknown>)) {
      if (!IDENT.test(table)) this.problem([...p, table], `"${table}" is not a table name (table or schema.table)`);
      else if (typeof col !== 'string' || !/^[A-Za-z_][A-Za-z0-9_$]*$/.test(col))
        this.problem([...p, table], `"${String(col)}" is not a plain column name`);
      else out[table] = col;
    }
    return out;
  }

  /** A table in both lists, and `shardKey.columns` entries outside the tenant tables. */
  private checkTableLists(shardKey: ShardMap['shardKey'] | undefined, tables: string[] | null, reference: string[]) {
    if (tables && reference.length > 0) {
      for (const t of reference.filter((r) => tables.includes(r))) {
        this.problem(['reference'], `table "${t}" is listed both as tenant table and reference table`);
      }
    }
    if (shardKey) this.checkKeyColumnTables(shardKey.columns, tables, reference);
  }

  /**
   * A `shardKey.columns` entry must name a tenant table: one in `tables` when that is a list (a name
   * there matches `schema.table` or the bare table), never a reference table (those have no tenant).
   */
  private checkKeyColumnTables(columns: Record<string, string>, tables: string[] | null, reference: string[]): void {
    const bare = (t: string) => t.slice(t.indexOf('.') + 1);
    const listed = (t: string, list: string[]) =>
      list.some((x) => x === t || x === bare(t) || bare(x) === t || (x === `public.${t}` && !t.includes('.')));
    for (const table of Object.keys(columns)) {
      if (listed(table, reference))
        this.problem(
          ['shardKey', 'columns', table],
          `"${table}" is a reference table (reference:), which holds no tenant column; remove it from shardKey.columns or from reference`,
        );
      else if (tables && !listed(table, tables))
        this.problem(
          ['shardKey', 'columns', table],
          `"${table}" is not in tables: (${tables.join(', ')}); add it there or remove it from shardKey.columns`,
        );
    }
  }

  private placement(): PlacementRule | undefined {
    const p = ['placement'];
    const n = this.node(p);
    if (n === undefined) {
      this.problem(p, 'is required, for example placement: { strategy: modulo }');
      return undefined;
    }
    if (!isMap(n)) {
      this.problem(p, 'must be a mapping with strategy (and buckets for hash)');
      return undefined;
    }
    this.rejectUnknownKeys(p, ['strategy', 'buckets']);
    const strategy = this.string([...p, 'strategy'], { required: true });
    if (strategy === 'modulo') {
      if (this.node([...p, 'buckets']) !== undefined)
        this.problem([...p, 'buckets'], 'applies only to strategy: hash', true);
      return { strategy: 'modulo' };
    }
    if (strategy === 'hash') {
      const b = this.value([...p, 'buckets']);
      if (b === undefined) {
        this.problem([...p, 'buckets'], 'is required for strategy: hash (for example 4096)');
        return undefined;
      }
      if (typeof b !== 'number' || !Number.isInteger(b) || b < 1 || b > 1_048_576) {
        this.problem([...p, 'buckets'], `must be an integer from 1 to 1048576, got ${JSON.stringify(b)}`);
        return undefined;
      }
      return { strategy: 'hash', buckets: b };
    }
    if (strategy !== undefined) this.problem([...p, 'strategy'], `must be modulo or hash, got "${strategy}"`);
    return undefined;
  }

  private shards(placement: PlacementRule | undefined): Shard[] | undefined {
    const p = ['shards'];
    const n = this.node(p);
    if (n === undefined || this.value(p) === null) {
      this.problem(p, 'is required: list at least one shard with name and url');
      return undefined;
    }
    if (!isSeq(n)) {
      this.problem(p, 'must be a list of shards');
      return undefined;
    }
    if (n.items.length === 0) {
      this.problem(p, 'lists no shards: add at least one with name and url');
      return undefined;
    }
    const seen: SeenShards = { names: new Map(), endpoints: new Map() };
    const shards = n.items.flatMap((item, i) => {
      const shard = this.shard(item, i, placement, seen);
      return shard ? [shard] : [];
    });
    return shards.length === n.items.length ? shards : this.problems.length > 0 ? undefined : shards;
  }

  /** One entry of `shards`, or undefined when it lacks a usable name or url (the problem is recorded). */
  private shard(item: unknown, i: number, placement: PlacementRule | undefined, seen: SeenShards): Shard | undefined {
    const sp: PathPart[] = ['shards', i];
    if (!isMap(item)) {
      this.problem(sp, 'must be a mapping with name and url');
      return undefined;
    }
    this.rejectUnknownKeys(sp, SHARD_KEYS);
    const name = this.shardName(sp, i, seen.names);
    const url = this.shardUrl(sp, i, seen.endpoints);
    const replicationUrl = this.string([...sp, 'replicationUrl'], { interpolate: true });
    if (replicationUrl !== undefined) {
      try {
        registerSecret(new URL(replicationUrl).password);
      } catch {
        this.problem([...sp, 'replicationUrl'], 'is not a PostgreSQL URL');
      }
    }
    let buckets: BucketRange[] = [];
    if (placement?.strategy === 'hash') {
      buckets = this.bucketRanges([...sp, 'buckets'], placement.buckets);
    } else if (this.node([...sp, 'buckets']) !== undefined && placement?.strategy === 'modulo') {
      this.problem([...sp, 'buckets'], 'applies only to placement strategy hash', true);
    }
    if (name === undefined || url === undefined) return undefined;
    return { name, index: i, url, buckets, ...(replicationUrl !== undefined ? { replicationUrl } : {}) };
  }

  private shardName(sp: PathPart[], i: number, names: Map<string, number>): string | undefined {
    const name = this.string([...sp, 'name'], { required: true });
    if (name === undefined) return undefined;
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name))
      this.problem([...sp, 'name'], `"${name}" may hold only letters, digits, "-", "_" and "."`);
    const prev = names.get(name);
    if (prev !== undefined) this.problem([...sp, 'name'], `duplicate shard name "${name}" (also shards[${prev}])`);
    else names.set(name, i);
    return name;
  }

  /** The shard's url (interpolated); a second shard on the same server and database is a problem. */
  private shardUrl(sp: PathPart[], i: number, endpoints: Map<string, number>): string | undefined {
    const url = this.string([...sp, 'url'], { required: true, interpolate: true });
    if (url === undefined) return undefined;
    let parsed: URL;
    try {
      parsed = new URL(url);
      if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') throw new Error('protocol');
      registerSecret(parsed.password);
    } catch {
      this.problem([...sp, 'url'], 'is not a PostgreSQL URL (postgres://USER:${PASSWORD_VAR}@HOST:PORT/DATABASE)');
      return url;
    }
    const endpoint = `${parsed.hostname.toLowerCase()}:${parsed.port || '5432'}/${decodeURIComponent(parsed.pathname.slice(1)) || decodeURIComponent(parsed.username)}`;
    const prev = endpoints.get(endpoint);
    if (prev !== undefined)
      this.problem([...sp, 'url'], `duplicate URL: shards[${prev}] already points at ${endpoint}`);
    else endpoints.set(endpoint, i);
    return url;
  }

  private bucketRanges(p: PathPart[], total: number): BucketRange[] {
    const raw = this.value(p);
    if (raw === undefined || raw === null) return []; // a shard may own no bucket (a new, empty shard)
    const parts: { v: unknown; p: PathPart[] }[] = Array.isArray(raw)
      ? raw.map((v, i) => ({ v, p: [...p, i] }))
      : typeof raw === 'string'
        ? raw.split(',').map((v) => ({ v: v.trim(), p }))
        : [{ v: raw, p }];
    const out: BucketRange[] = [];
    for (const { v, p: vp } of parts) {
      const m =
        typeof v === 'number'
          ? [String(v), String(v), String(v)]
          : typeof v === 'string'
            ? /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(v)
            : null;
      if (!m) {
        this.problem(vp, `bucket range must look like 0-2047 or 17, got ${JSON.stringify(v)}`);
        continue;
      }
      const from = Number(m[1]);
      const to = Number(m[2] ?? m[1]);
      if (from > to) this.problem(vp, `bucket range ${from}-${to} is reversed`);
      else if (to >= total) this.problem(vp, `bucket range ${from}-${to} is out of range: buckets are 0-${total - 1}`);
      else out.push({ from, to });
    }
    return out;
  }

  private checkBucketCoverage(total: number, shards: Shard[]): void {
    const owned = shards.flatMap((s) => s.buckets.map((r) => ({ ...r, shard: s })));
    owned.sort((a, b) => a.from - b.from);
    let next = 0;
    let prev: (typeof owned)[number] | undefined;
    for (const r of owned) {
      if (r.from > next)
        this.problem(['shards', r.shard.index, 'buckets'], `gap: buckets ${next}-${r.from - 1} belong to no shard`);
      if (prev && r.from <= prev.to) {
        this.problem(
          ['shards', r.shard.index, 'buckets'],
          `overlap: buckets ${r.from}-${Math.min(r.to, prev.to)} are owned by ${prev.shard.name} and ${r.shard.name}`,
        );
      }
      if (!prev || r.to > prev.to) prev = r;
      next = Math.max(next, r.to + 1);
    }
    if (next < total) this.problem(['placement', 'buckets'], `gap: buckets ${next}-${total - 1} belong to no shard`);
  }

  private tableList(p: PathPart[]): string[] | undefined {
    const raw = this.value(p);
    if (!Array.isArray(raw)) {
      this.problem(p, 'must be a list of table names');
      return undefined;
    }
    const out: string[] = [];
    raw.forEach((t, i) => {
      if (typeof t !== 'string' || !IDENT.test(t))
        this.problem([...p, i], `"${String(t)}" is not a table name (table or schema.table)`);
      else if (out.includes(t)) this.problem([...p, i], `table "${t}" is listed twice`);
      else out.push(t);
    });
    return out;
  }

  private migrateSettings(): MigrateSettings {
    const p = ['migrate'];
    const settings: MigrateSettings = { lockTimeoutMs: 5000, statementTimeoutMs: 0 };
    if (this.node(p) === undefined) return settings;
    if (!isMap(this.node(p))) {
      this.problem(p, 'must be a mapping (lockTimeout, statementTimeout)');
      return settings;
    }
    this.rejectUnknownKeys(p, ['lockTimeout', 'statementTimeout']);
    for (const [key, field] of [
      ['lockTimeout', 'lockTimeoutMs'],
      ['statementTimeout', 'statementTimeoutMs'],
    ] as const) {
      const raw = this.value([...p, key]);
      if (raw === undefined) continue;
      const ms = parseDuration(raw);
      if (ms === undefined)
        this.problem([...p, key], `must be a duration such as 5s, 500ms or 0, got ${JSON.stringify(raw)}`);
      else settings[field] = ms;
    }
    return settings;
  }

  private routerSettings(): RouterSettings {
    const p = ['routers'];
    const settings: RouterSettings = { directoryTtlMs: 2000 };
    if (this.node(p) === undefined) return settings;
    if (!isMap(this.node(p))) {
      this.problem(p, 'must be a mapping (directoryTtl)');
      return settings;
    }
    this.rejectUnknownKeys(p, ['directoryTtl']);
    const raw = this.value([...p, 'directoryTtl']);
    if (raw === undefined) return settings;
    const ms = parseDuration(raw);
    if (ms === undefined)
      this.problem([...p, 'directoryTtl'], `must be a duration such as 2s or 500ms, got ${JSON.stringify(raw)}`);
    else settings.directoryTtlMs = ms;
    return settings;
  }
}

function formatPath(p: PathPart[]): string {
  return p.map((x, i) => (typeof x === 'number' ? `[${x}]` : i === 0 ? x : `.${x}`)).join('');
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (v === null) return 'null';
  return typeof v === 'object' ? 'a mapping' : typeof v;
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) dp[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      dp[i]![j] = Math.min(
        dp[i - 1]![j]! + 1,
        dp[i]![j - 1]! + 1,
        dp[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  }
  return dp[a.length]![b.length]!;
}
