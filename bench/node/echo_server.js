// Baseline for bench/ws.sh: a WebSocket echo server on Node's `ws` package, doing what
// switchyard's echo app does: every message goes back as it came (text stays text, binary stays
// binary), no compression, messages up to 16 MiB. Plain HTTP requests get 200 "hello".
//
//   node bench/node/echo_server.js [PORT] [HOST]      (defaults 8080, 127.0.0.1; PORT 0 = any)
//
// Prints "listening on http://HOST:PORT" once ready; SIGINT/SIGTERM exit at once.
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 8080);
const host = process.argv[3] || '127.0.0.1';

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('hello');
});

const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {}); // a peer that vanishes is not the server's problem
});

server.listen(port, host, () => {
  const a = server.address();
  const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  console.log(`listening on http://${h}:${a.port}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
