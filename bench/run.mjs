#!/usr/bin/env node
// `npm run bench -- <name> [args]`: runs bench/<name>.mjs. Every benchmark prints its figures as
// ratios against a baseline measured in the same run, never against a fixed number of seconds.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = path.dirname(new URL(import.meta.url).pathname);
const available = readdirSync(dir)
  .filter((f) => f.endsWith('.mjs') && f !== 'run.mjs' && !f.startsWith('_'))
  .map((f) => f.slice(0, -4));
const [name, ...args] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <${available.join('|')}> [options]`);
  process.exit(2);
}
const mod = await import(pathToFileURL(path.join(dir, `${name}.mjs`)).href);
await mod.default(args);
