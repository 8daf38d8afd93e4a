// Node peer of `cargo xtask bench sse`: a plain `node:http` server holding every SSE response
// and writing each frame to each response with `res.write` (what the common Node SSE libraries
// do). It speaks the bench's line protocol on stdin/stdout, like the Rust server modes:
//   PORT <p> (printed once), WAIT <n>, PUB <k> <pad>, RSS, STATS, QUIT.
// Frames are byte-for-byte the ones hookwire sends (`id: v\nevent: patch\ndata: {...}\n\n`) and
// carry CLOCK_MONOTONIC nanoseconds (`process.hrtime.bigint()` on Linux) as `"t":`.
import http from 'node:http';
import fs from 'node:fs';
import readline from 'node:readline';

const STATE = JSON.stringify({ _v: 0, board: 'x'.repeat(100) });
const subs = new Set();
let v = 0;

const server = http.createServer((req, res) => {
  if (req.method !== 'GET' || !req.url.startsWith('/events/')) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
  res.write(`id: 0\nevent: snapshot\ndata: ${STATE}\n\n`);
  subs.add(res);
  res.on('close', () => subs.delete(res));
});

function kib(text, key) {
  const line = text.split('\n').find((l) => l.startsWith(key));
  return line ? Number(line.split(/\s+/)[1]) : 0;
}

function rss() {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  let smaps = '';
  try {
    smaps = fs.readFileSync('/proc/self/smaps_rollup', 'utf8');
  } catch {}
  return `RSS ${kib(status, 'VmRSS:')} ${kib(smaps, 'Anonymous:')}`;
}

function waitFor(n) {
  if (subs.size >= n) {
    console.log('OK');
  } else {
    setTimeout(() => waitFor(n), 5);
  }
}

server.listen(0, '127.0.0.1', () => {
  console.log(`PORT ${server.address().port}`);
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const parts = line.trim().split(/\s+/);
    switch (parts[0]) {
      case 'WAIT':
        waitFor(Number(parts[1]));
        break;
      case 'PUB': {
        const k = Number(parts[1]);
        const pad = Number(parts[2]);
        for (let i = 0; i < k; i++) {
          v += 1;
          const t = process.hrtime.bigint();
          const p = pad === 0 ? `{"v":{"t":${t}}}` : `{"v":{"t":${t}},"pad":"${'p'.repeat(pad)}"}`;
          const frame = `id: ${v}\nevent: patch\ndata: {"${v}":${p}}\n\n`;
          for (const res of subs) res.write(frame);
        }
        console.log('OK');
        break;
      }
      case 'RSS':
        console.log(rss());
        break;
      case 'STATS':
        console.log('STATS 0');
        break;
      default:
        process.exit(0);
    }
  });
  rl.on('close', () => process.exit(0));
});
