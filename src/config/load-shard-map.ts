import { readFile } from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import type { ShardMap } from './shard-map.js';
import { parseShardMap, type ParseShardMapOptions } from './validate-shard-map.js';

/**
 * Where the map is read from when no path is given: `$SHARDCTL_CONFIG`, else `./shards.yaml`.
 *
 * @example
 * defaultShardMapPath() // 'shards.yaml'
 */
export function defaultShardMapPath(env: Record<string, string | undefined> = process.env): string {
  return env.SHARDCTL_CONFIG || 'shards.yaml';
}

/**
 * Reads and validates a shard map file. Throws {@link ConfigError} (exit code 2) listing every
 * problem with file:line:column, or when the file cannot be read.
 *
 * @param file path of the YAML file; default {@link defaultShardMapPath}
 * @example
 * const map = await loadShardMap('shards.yaml');
 */
export async function loadShardMap(
  file: string = defaultShardMapPath(),
  options: Omit<ParseShardMapOptions, 'file'> = {},
): Promise<ShardMap> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'file not found (pass -c FILE, set SHARDCTL_CONFIG, or run `shardctl dev up` to create shards.dev.yaml)'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory, not a YAML file'
            : String((e as Error).message);
    throw new ConfigError(file, [{ line: 0, column: 0, path: '', message: why }]);
  }
  return parseShardMap(text, { ...options, file });
}
