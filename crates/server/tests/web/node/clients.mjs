// Node clients driven line by line, for crates/server/tests/it_web_clients.rs: the npm
// packages `ws` (a WebSocket client) and `eventsource` (the WHATWG EventSource, which
// reconnects by itself after the `retry:` advice and sends Last-Event-ID), both installed
// into this folder by .ci/run (`npm install`).
//
// Commands arrive on stdin, one JSON object a line:
//   {"cmd":"ws_open","conn":"W","url":"ws://127.0.0.1:PORT/ws"}
//   {"cmd":"ws_send","conn":"W","text":"<a text frame>"}
//   {"cmd":"ws_close","conn":"W"}
//   {"cmd":"es_open","conn":"E","url":"http://127.0.0.1:PORT/sse?ch=a"}
//   {"cmd":"es_close","conn":"E"}
// Everything that happens is printed on stdout, one JSON object a line:
//   {"conn":"W","ev":"open"} / {"conn":"W","ev":"msg","text":"..."} / {"conn":"W","ev":"closed","code":1000}
//   {"conn":"E","ev":"open"} / {"conn":"E","ev":"event","event":"message","id":"...","data":"..."}
//   {"conn":"E","ev":"error","readyState":0}   (0: it will reconnect by itself)
// The script exits when stdin closes (so it never outlives the test) or after a watchdog.

import { createInterface } from 'node:readline';

let WebSocket, EventSource;
try {
  ({ default: WebSocket } = await import('ws'));
  ({ EventSource } = await import('eventsource'));
} catch (e) {
  process.stderr.write(
    `clients.mjs: the npm packages ws and eventsource (3 or later) are missing in ${import.meta.dirname ?? '.'} (${e}); run .ci/run\n`,
  );
  process.exit(3);
}
if (typeof EventSource !== 'function') {
  process.stderr.write('clients.mjs: `eventsource` has no named export EventSource (need v3 or later); run .ci/run\n');
  process.exit(3);
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const watchdog = setTimeout(() => {
  process.stderr.write('clients.mjs: watchdog expired\n');
  process.exit(4);
}, 90_000);
watchdog.unref();

const sockets = new Map();
const sources = new Map();

function wsOpen(conn, url) {
  const ws = new WebSocket(url, { handshakeTimeout: 5000 });
  sockets.set(conn, ws);
  ws.on('open', () => emit({ conn, ev: 'open' }));
  ws.on('message', (data, isBinary) => {
    if (isBinary) emit({ conn, ev: 'binary', len: data.length });
    else emit({ conn, ev: 'msg', text: data.toString('utf8') });
  });
  ws.on('close', (code, reason) => emit({ conn, ev: 'closed', code, reason: reason.toString() }));
  ws.on('error', (e) => emit({ conn, ev: 'error', error: String(e) }));
}

function esOpen(conn, url) {
  const es = new EventSource(url);
  sources.set(conn, es);
  es.onopen = () => emit({ conn, ev: 'open' });
  es.onerror = (e) =>
    emit({ conn, ev: 'error', readyState: es.readyState, error: String(e?.message ?? '') });
  const report = (e) => emit({ conn, ev: 'event', event: e.type, id: e.lastEventId, data: e.data });
  es.addEventListener('message', report);
  es.addEventListener('reset', report);
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  const { conn } = cmd;
  try {
    switch (cmd.cmd) {
      case 'ws_open':
        wsOpen(conn, cmd.url);
        break;
      case 'ws_send':
        sockets.get(conn).send(cmd.text);
        break;
      case 'ws_close':
        sockets.get(conn).close(1000);
        sockets.delete(conn);
        break;
      case 'es_open':
        esOpen(conn, cmd.url);
        break;
      case 'es_close':
        sources.get(conn).close();
        sources.delete(conn);
        emit({ conn, ev: 'closed' });
        break;
      default:
        emit({ conn, ev: 'error', error: `unknown command ${line}` });
    }
  } catch (e) {
    emit({ conn, ev: 'error', error: String(e) });
  }
});
rl.on('close', () => {
  for (const es of sources.values()) es.close();
  for (const ws of sockets.values()) ws.terminate();
  process.exit(0);
});
