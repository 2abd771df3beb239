#!/usr/bin/env node
// The test matrix behind `npm test`: unit tests once, then the integration suite per PostgreSQL major
// (SHARDCTL_TEST_PG_MAJORS): whole on the newest (18) and the oldest (15), and on 16 and 17 the files
// that touch catalogs which differ between majors (query merges, online moves, verify, versions-*).
// Prints one line per run and a closing `N passed, N failed` summed over the runs; exits 1 on any
// failure (a run that ends without a report counts as one failure).
//
//   node scripts/test-matrix.mjs                 the matrix
//   node scripts/test-matrix.mjs --majors 15     only the runs of these majors (unit tests too)
//   node scripts/test-matrix.mjs --jobs 2        runs at once (default 1: on two cores, two runs at once
//                                                make the suites' timing-sensitive tests compete for CPU)
//   node scripts/test-matrix.mjs --no-unit       skip the unit run
//   node scripts/test-matrix.mjs --middle separate   16 and 17 in two runs (default: one run whose servers
//                                                    alternate 16, 17, 16, so every cluster of two or more
//                                                    shards spans both and moves between them)
//
// With SHARDCTL_TEST_PG_URLS (external servers) there is one integration run, against those servers.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const vitest = path.join(root, 'node_modules', '.bin', 'vitest');

/** Integration files run on the middle majors: the ones whose SQL meets catalogs that differ by major. */
const VERSION_SENSITIVE = [/^query-/, /^move-online\.test\.ts$/, /^verify\.test\.ts$/, /^versions-/];

function args() {
  const a = process.argv.slice(2);
  const value = (name) => {
    const i = a.indexOf(name);
    return i >= 0 ? a[i + 1] : undefined;
  };
  const majors = value('--majors')
    ?.split(',')
    .map((m) => Number(m.trim()));
  return {
    majors,
    jobs: Math.max(1, Number(value('--jobs') ?? 1)),
    unit: !a.includes('--no-unit'),
    middle: value('--middle') ?? 'mixed',
  };
}

function sensitiveFiles() {
  const dir = path.join(root, 'test', 'integration');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.test.ts') && VERSION_SENSITIVE.some((re) => re.test(f)))
    .sort()
    .map((f) => path.join('test', 'integration', f));
}

/** The runs of the matrix, in the order they start. */
function plan(opts) {
  const runs = [];
  if (opts.unit) runs.push({ name: 'unit tests', tag: 'unit', project: 'unit', env: {} });
  if (process.env.SHARDCTL_TEST_PG_URLS) {
    runs.push({ name: 'integration, external servers', tag: 'external', project: 'integration', env: {} });
    return runs;
  }
  const want = (m) => !opts.majors || opts.majors.includes(m);
  for (const m of [18, 15].filter(want)) {
    runs.push({
      name: `PostgreSQL ${m}, whole suite`,
      tag: `pg${m}`,
      project: 'integration',
      // The crash matrices walk the even points on the newest major and the odd ones on the oldest
      // (test/harness/crash-sample.ts), so each matrix run walks every point once: the points exercise
      // shardctl's journal with the same SQL on every major, and CI has 15 minutes. The online (logical
      // replication) crash matrix meets server code that differs by major: it walks every point on 18.
      env: { SHARDCTL_TEST_PG_MAJORS: String(m), SHARDCTL_TEST_CRASH_POINTS: m === 18 ? 'even' : 'odd' },
    });
  }
  const middle = [16, 17].filter(want);
  const groups = opts.middle === 'separate' || middle.length < 2 ? middle.map((m) => [m]) : [middle];
  for (const g of groups) {
    runs.push({
      name: `PostgreSQL ${g.join(' and ')}, version-sensitive files`,
      tag: `pg${g.join('+')}`,
      project: 'integration',
      env: { SHARDCTL_TEST_PG_MAJORS: g.join(',') },
      files: sensitiveFiles(),
    });
  }
  return runs;
}

/** The files of a vitest JSON report that ran longest, as `name seconds`, longest first (the CI budget is spent here). */
function slowestFiles(report, count = 6) {
  return report.testResults
    .map((f) => ({ name: path.basename(f.name), seconds: (f.endTime - f.startTime) / 1000 }))
    .sort((a, b) => b.seconds - a.seconds)
    .slice(0, count)
    .map((f) => `${f.name} ${Math.round(f.seconds)} s`);
}

/** Runs one vitest; resolves with its counts (from the JSON reporter) and wall time. */
function runOne(run, dir, index, prefixed) {
  const report = path.join(dir, `run-${index}.json`);
  const argv = [
    'run',
    '--project',
    run.project,
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${report}`,
    ...(run.files ?? []),
  ];
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(vitest, argv, {
      cwd: root,
      env: { ...process.env, ...run.env, FORCE_COLOR: prefixed ? '0' : (process.env.FORCE_COLOR ?? '') },
      stdio: prefixed ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    });
    // Runs at once interleave their output: each line carries its run's name.
    const prefix = `[${run.tag}] `;
    const pending = { stdout: '', stderr: '' };
    const relay = (stream) => (d) => {
      const lines = (pending[stream] + d).split('\n');
      pending[stream] = lines.pop();
      for (const line of lines) process.stdout.write(prefix + line + '\n');
    };
    if (prefixed) {
      child.stdout.on('data', relay('stdout'));
      child.stderr.on('data', relay('stderr'));
    }
    child.on('close', (code) => {
      const seconds = Math.round((Date.now() - started) / 1000);
      for (const rest of Object.values(pending)) if (rest) process.stdout.write(prefix + rest + '\n');
      let passed = 0;
      let failed;
      let skipped = 0;
      let slowest = [];
      try {
        const r = JSON.parse(readFileSync(report, 'utf8'));
        passed = r.numPassedTests;
        failed = r.numFailedTests;
        skipped = r.numPendingTests + (r.numTodoTests ?? 0);
        slowest = slowestFiles(r);
        // A file that failed to load (or a hook) fails no test but fails the run.
        if (failed === 0 && (code !== 0 || r.numFailedTestSuites > 0)) failed = 1;
      } catch {
        failed = 1;
      }
      resolve({ run, passed, failed, skipped, seconds, code, slowest });
    });
  });
}

async function main() {
  const opts = args();
  const runs = plan(opts);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'shardctl-matrix-'));
  const started = Date.now();
  const results = [];
  let next = 0;
  const worker = async () => {
    while (next < runs.length) {
      const i = next++;
      results[i] = await runOne(runs[i], dir, i, opts.jobs > 1);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(opts.jobs, runs.length) }, worker));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('\ntest matrix:');
  for (const r of results) {
    const skipped = r.skipped ? `, ${r.skipped} skipped` : '';
    console.log(`  ${r.run.name}: ${r.passed} passed, ${r.failed} failed${skipped} (${r.seconds} s)`);
    if (r.slowest.length > 0 && r.run.project !== 'unit') console.log(`    slowest: ${r.slowest.join(', ')}`);
  }
  const passed = results.reduce((a, r) => a + r.passed, 0);
  const failed = results.reduce((a, r) => a + r.failed, 0);
  console.log(`  wall time ${Math.round((Date.now() - started) / 1000)} s`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 ? 1 : 0;
}

await main();
