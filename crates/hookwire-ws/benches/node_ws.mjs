// Node peer of `cargo xtask bench ws`: a `ws` (npm) WebSocketServer with one room, speaking the
// small part of hookwire's protocol the bench uses, so the same client drives both servers:
//   server → client: {"type":"connected"} on open, {"type":"subscribed","channel":r} after a
//     subscribe, event frames {"type":…,"data":…,"meta":{…}} (the shape hookwire sends);
//   client → server: {"type":"subscribe","resource":r}, {"type":"pong"},
//     {"type":"bench.publish","seq":s} (one event to the room),
//     {"type":"bench.burst","seq":s,"n":m} (m events back to back).
// A publish encodes the frame once into a Buffer and sends it to every member (the broadcast
// pattern of the `ws` README). Heartbeat: a protocol ping to every client each HEARTBEAT_MS
// (default 30 s), the usual `ws` keep-alive. Prints the port on stdout.
import { WebSocketServer } from 'ws';

const heartbeat = Number(process.env.HEARTBEAT_MS || 30000);
const room = new Set();
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/ws', perMessageDeflate: false });

function publish(seq) {
  const frame = Buffer.from(
    JSON.stringify({
      type: 'bench.tick',
      data: { seq, pad: 'x'.repeat(96) },
      meta: { timestamp: new Date().toISOString(), organizationId: 'acme' },
    }),
  );
  for (const c of room) {
    if (c.readyState === 1) c.send(frame, { binary: false });
  }
}

wss.on('connection', (ws) => {
  ws.send(JSON.stringify({ type: 'connected' }));
  ws.on('message', (data) => {
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    switch (m.type) {
      case 'subscribe':
        room.add(ws);
        ws.send(JSON.stringify({ type: 'subscribed', channel: m.resource }));
        break;
      case 'bench.publish':
        publish(m.seq);
        break;
      case 'bench.burst':
        for (let i = 0; i < m.n; i++) publish(m.seq + i);
        break;
      default:
    }
  });
  ws.on('close', () => room.delete(ws));
  ws.on('error', () => room.delete(ws));
});

setInterval(() => {
  for (const c of wss.clients) c.ping();
}, heartbeat).unref();

wss.on('listening', () => console.log(String(wss.address().port)));
