/**
 * shardctl's layers, lowest first. A module may import from its own folder and from layers below its
 * own, never from a layer above or from a sibling in the same layer (siblings share through a lower
 * layer). `npm run lint` fails on any such import and on any cycle between files.
 * docs/architecture.md shows the same order.
 */
const LAYERS = [
  { name: 'base', paths: ['src/errors\\.ts', 'src/version\\.ts', 'src/redact\\.ts', 'src/crash-points\\.ts'] },
  { name: 'config', paths: ['src/config/'] },
  { name: 'placement', paths: ['src/placement/'] },
  { name: 'db', paths: ['src/db/'] },
  { name: 'catalog', paths: ['src/catalog/'] },
  { name: 'router', paths: ['src/router/'] },
  {
    name: 'cores',
    paths: ['src/locate/', 'src/migrate/', 'src/query/', 'src/shards/', 'src/move/', 'src/dev/', 'src/tx/'],
  },
  { name: 'verify', paths: ['src/verify/'] },
  { name: 'rebalance', paths: ['src/rebalance/', 'src/adopt/'] },
  { name: 'entries', paths: ['src/index\\.ts', 'src/internal\\.ts'] },
  { name: 'cli', paths: ['src/cli/'] },
];

const anyOf = (paths) => `^(${paths.join('|')})`;

const layerRules = LAYERS.flatMap((layer, i) => {
  const above = LAYERS.slice(i + 1).flatMap((l) => l.paths);
  const rules = [];
  if (above.length) {
    rules.push({
      name: `layer-${layer.name}-up`,
      comment: `${layer.name} may not import from a layer above it (${LAYERS.slice(i + 1)
        .map((l) => l.name)
        .join(', ')})`,
      severity: 'error',
      from: { path: anyOf(layer.paths) },
      to: { path: anyOf(above) },
    });
  }
  // Folders of one layer do not import each other: each may see only its own folder and the layers below.
  if (layer.paths.length > 1 && layer.paths.every((p) => p.endsWith('/'))) {
    for (const p of layer.paths) {
      rules.push({
        name: `layer-${layer.name}-sibling-${p.split('/')[1]}`,
        comment: `${p} may not import from another folder of the ${layer.name} layer (share through a lower layer)`,
        severity: 'error',
        from: { path: anyOf([p]) },
        to: { path: anyOf(layer.paths.filter((x) => x !== p)) },
      });
    }
  }
  return rules;
});

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'No import cycle between files (a cycle between folders is an upward import, caught above)',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'src-not-from-test',
      comment: 'Shipped code never imports tests, benchmarks or scripts',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|scripts)/' },
    },
    {
      name: 'cli-through-entries',
      comment: 'The CLI reaches the core through src/index.ts (public) or src/internal.ts (CLI-only), not around them',
      severity: 'error',
      from: { path: '^src/cli/' },
      to: {
        path: '^src/',
        pathNot: [
          '^src/cli/',
          '^src/index\\.ts$',
          '^src/internal\\.ts$',
          '^src/errors\\.ts$',
          '^src/redact\\.ts$',
          '^src/version\\.ts$',
        ],
      },
    },
    ...layerRules,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // Dynamic import() is an import too: a lazily loaded module is still a dependency.
    exclude: { path: '^(dist|node_modules)/' },
  },
};
