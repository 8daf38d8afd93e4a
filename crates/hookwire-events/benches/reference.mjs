// Peer of `cargo xtask bench bus`: the widely used Node event-bus consumer algorithm on ioredis,
// as that framework's Redis Streams transport runs it (defaults kept):
//   publish:  XADD <stream> * type <type> data <json>            (one command per event)
//   loop:     claim pending, then read new
//     claim:  XPENDING <stream> <group> - + 10; for entries idle > 30 s: delivery count >= 5 ->
//             dead-letter stream + XACK, else XCLAIM and process
//     read:   XREADGROUP GROUP <g> <c> COUNT 10 BLOCK 5000 STREAMS <stream> >
//     entry:  fields as pairs; JSON.parse with the `timestamp` reviver; run the handlers one by
//             one; one XACK per entry
// Trimming is off (MAXLEN 0) so that no entry is lost while the consumer lags.
// A producer publishes N events of about <bytes> bytes in awaited batches of 100 while the
// consumer runs; the clock stops at the N-th XACK. Prints {"ms":…, "consumer":…}.
// Usage: node reference.mjs <port> <n> <stream> <group> <bytes>
import { randomBytes, randomUUID } from 'node:crypto';
import Redis from 'ioredis';

const [port, n, stream, group, bytes] = process.argv.slice(2).map((v, i) => (i === 2 || i === 3 ? v : Number(v)));
const pub = new Redis({ host: '127.0.0.1', port });
const sub = new Redis({ host: '127.0.0.1', port });
const consumer = 'consumer-' + randomBytes(4).toString('hex');
const batchSize = 10;
const blockTimeMs = 5000;
const claimTimeoutMs = 30000;
const maxRetries = 5;
const deadLetterStream = stream + ':dlq';

const reviver = (key, value) => (key === 'timestamp' && typeof value === 'string' ? new Date(value) : value);
const handlers = [async (_event) => {}];

let done = 0;
let resolve;
const finished = new Promise((r) => (resolve = r));

async function processEntry(id, fields) {
  let type;
  let data;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'type') type = fields[i + 1];
    else if (fields[i] === 'data') data = fields[i + 1];
  }
  if (type === undefined || data === undefined) {
    await sub.xack(stream, group, id);
    return;
  }
  let event;
  try {
    event = JSON.parse(data, reviver);
  } catch {
    await sub.xack(stream, group, id);
    return;
  }
  if (typeof event.type !== 'string' || !event.meta?.id) {
    await sub.xack(stream, group, id);
    return;
  }
  try {
    for (const h of handlers) await h(event);
    await sub.xack(stream, group, id);
    done += 1;
    if (done === n) resolve();
  } catch (err) {
    console.error(`[RedisStreamTransport] Handler error for ${type}:`, err);
  }
}

async function claimPending() {
  try {
    const pending = await sub.xpending(stream, group, '-', '+', 10);
    for (const [id, , idle, count] of pending) {
      if (idle < claimTimeoutMs) continue;
      if (count >= maxRetries) {
        await sub.xadd(deadLetterStream, '*', 'originalStream', stream, 'originalId', id, 'group', group, 'failedAt', new Date().toISOString());
        await sub.xack(stream, group, id);
        continue;
      }
      const claimed = await sub.xclaim(stream, group, consumer, claimTimeoutMs, id);
      for (const [cid, fields] of claimed) await processEntry(cid, fields);
    }
  } catch {
    // swallowed, as the original does
  }
}

let running = true;
async function loop() {
  while (running) {
    try {
      await claimPending();
      const res = await sub.xreadgroup('GROUP', group, consumer, 'COUNT', batchSize, 'BLOCK', blockTimeMs, 'STREAMS', stream, '>');
      if (!res) continue;
      for (const [, entries] of res) {
        for (const [id, fields] of entries) await processEntry(id, fields);
      }
    } catch (err) {
      console.error('Poll error', err);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

try {
  await sub.xgroup('CREATE', stream, group, '$', 'MKSTREAM');
} catch (err) {
  if (!String(err.message).includes('BUSYGROUP')) throw err;
}

// Pad the payload so that one event's JSON is about `bytes` long.
const sample = JSON.stringify({ type: 'bench.event', payload: { i: '00000000', pad: '' }, meta: { id: randomUUID(), timestamp: new Date() } });
const pad = 'x'.repeat(Math.max(0, bytes - sample.length));

const t0 = performance.now();
loop();
for (let i = 0; i < n; i += 100) {
  const batch = [];
  for (let j = i; j < Math.min(n, i + 100); j++) {
    const event = { type: 'bench.event', payload: { i: String(j).padStart(8, '0'), pad }, meta: { id: randomUUID(), timestamp: new Date() } };
    batch.push(pub.xadd(stream, '*', 'type', event.type, 'data', JSON.stringify(event)));
  }
  await Promise.all(batch);
}
await finished;
const t1 = performance.now();
running = false;
console.log(JSON.stringify({ ms: t1 - t0, consumer }));
process.exit(0);
