#!/usr/bin/env node
// Lint rule: the core never prints and never exits. Only src/cli/ talks to the terminal;
// everything else returns data or throws ShardctlError, and the CLI renders it.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'src');
const banned = [
  [/\bconsole\.(log|error|warn|info|debug|trace)\s*\(/, 'console output'],
  [/\bprocess\.exit\s*\(/, 'process.exit'],
  [/\bprocess\.(stdout|stderr)\.write\s*\(/, 'direct terminal write'],
];
const problems = [];
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) {
      if (path.relative(root, file) !== 'cli') walk(file);
    } else if (file.endsWith('.ts')) {
      readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
        if (/^\s*(\/\/|\*)/.test(line)) return;
        for (const [re, what] of banned) if (re.test(line)) problems.push(`src/${path.relative(root, file)}:${i + 1}: ${what} outside src/cli/ (return data instead)`);
      });
    }
  }
}
walk(root);
if (problems.length) {
  for (const p of problems) process.stderr.write(p + '\n');
  process.exit(1);
}
