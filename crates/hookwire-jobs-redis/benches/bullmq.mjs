// BullMQ side of `cargo xtask bench jobs`: add N jobs in bulk, then process them with a no-op
// handler at the given concurrency. The clock stops at the N-th `completed` event, which BullMQ
// emits once `moveToCompleted` has stored the outcome in Redis. Redis `INFO cpu` is read before
// the add, between add and processing, and at the end, so the harness can split Redis CPU.
// Prints one JSON line: {"add_ms", "process_ms", "cpu": [s0, s1, s2]}.
// Usage: node bullmq.mjs <port> <n> <concurrency> <remove_on_complete: true | N>
import { Queue, Worker } from 'bullmq';

const [port, n, concurrency] = process.argv.slice(2, 5).map(Number);
const keep = process.argv[5] === 'true' || process.argv[5] === undefined ? true : Number(process.argv[5]);
const connection = { host: '127.0.0.1', port };
const name = 'bench-' + Date.now();
const queue = new Queue(name, { connection });
await queue.waitUntilReady();
const client = await queue.client;

// used_cpu_user + used_cpu_sys of the Redis server, in seconds.
async function redisCpu() {
  const info = await client.info('cpu');
  let s = 0;
  for (const line of info.split('\n')) {
    const [k, v] = line.trim().split(':');
    if (k === 'used_cpu_user' || k === 'used_cpu_sys') s += Number(v);
  }
  return s;
}

const cpu0 = await redisCpu();
const t0 = performance.now();
for (let i = 0; i < n; i += 1000) {
  const batch = [];
  for (let j = i; j < Math.min(n, i + 1000); j++) {
    batch.push({ name: 'noop', data: { i: j }, opts: { removeOnComplete: keep } });
  }
  await queue.addBulk(batch);
}
const t1 = performance.now();
const cpu1 = await redisCpu();

let done = 0;
let t3 = 0;
let resolve;
const finished = new Promise((r) => (resolve = r));
const worker = new Worker(name, async () => {}, { connection, concurrency, autorun: false });
worker.on('completed', () => {
  done += 1;
  if (done === n) {
    t3 = performance.now();
    resolve();
  }
});
const t2 = performance.now();
worker.run();
await finished;
const cpu2 = await redisCpu();
await worker.close();
await queue.close();
console.log(JSON.stringify({ add_ms: t1 - t0, process_ms: t3 - t2, cpu: [cpu0, cpu1, cpu2] }));
process.exit(0);
