// bench/node/fanout_server.js: the Node `ws` baseline for `wsload -m fanout`: clients on /sub
// receive every message sent on /pub, broadcast the usual ws way (a loop of client.send, each
// framing its copy). Usage: node fanout_server.js PORT
"use strict";
const http = require("http");
const { WebSocketServer, WebSocket } = require("ws");

const port = Number(process.argv[2] || 0);
const server = http.createServer((req, res) => { res.writeHead(404); res.end(); });
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
const subs = new Set();

server.on("upgrade", (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (req.url === "/sub") {
      subs.add(ws);
      ws.on("close", () => subs.delete(ws));
    } else {
      ws.on("message", (data, isBinary) => {
        for (const s of subs) if (s.readyState === WebSocket.OPEN) s.send(data, { binary: isBinary });
      });
    }
  });
});
server.listen(port, "127.0.0.1", () => {
  console.log("listening on http://127.0.0.1:" + server.address().port);
});
