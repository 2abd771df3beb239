import { startBenchCluster } from './_cluster.mjs';
import { createRouter } from '../dist/index.js';
const c = await startBenchCluster({ shards: 2 });
const r = await createRouter(c.map, { listen: process.argv[2] === 'listen' });
await new Promise((res) => setTimeout(res, 1500));
await r.close();
console.log('closed');
await c.stop();
console.log('stopped');
