// BullMQ side of `cargo xtask bench jobs`: add N jobs in bulk, then process them with a no-op
// handler at the given concurrency. Prints one JSON line: {"add_ms":…, "process_ms":…}.
// Usage: node bullmq.mjs <port> <n> <concurrency>
import { Queue, Worker } from 'bullmq';

const [port, n, concurrency] = process.argv.slice(2).map(Number);
const connection = { host: '127.0.0.1', port };
const name = 'bench-' + Date.now();
const queue = new Queue(name, { connection });
await queue.waitUntilReady();

const t0 = performance.now();
for (let i = 0; i < n; i += 1000) {
  const batch = [];
  for (let j = i; j < Math.min(n, i + 1000); j++) {
    batch.push({ name: 'noop', data: { i: j }, opts: { removeOnComplete: true } });
  }
  await queue.addBulk(batch);
}
const t1 = performance.now();

let done = 0;
let resolve;
const finished = new Promise((r) => (resolve = r));
const worker = new Worker(name, async () => {}, { connection, concurrency, autorun: false });
worker.on('completed', () => {
  done += 1;
  if (done === n) resolve();
});
const t2 = performance.now();
worker.run();
await finished;
const t3 = performance.now();
await worker.close();
await queue.close();
console.log(JSON.stringify({ add_ms: t1 - t0, process_ms: t3 - t2 }));
process.exit(0);
