// WebSocket echo load over HTTP/2 extended CONNECT (RFC 8441, node's http2 module) or over
// HTTP/1.1 (npm `ws`), for bench/ws_h2.sh. Every WebSocket keeps one 32-byte text message in
// flight; after WARMUP seconds the server's CPU time (/proc/PID/stat utime+stime) and the echo
// count are read, again after DURATION seconds.
// Usage: node ws_h2_load.js h2|h1 HOST:PORT CONNS STREAMS_PER_CONN WARMUP DURATION SERVER_PID
// Prints one line: mode=.. sockets=.. websockets=.. msgs=.. secs=.. msgs_per_s=.. cpu_us_per_msg=..
"use strict";
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");

const [mode, hostport, conns, per, warmup, duration, pid] = process.argv.slice(2);
const [host, port] = hostport.split(":");
const CONNS = +conns, PER = +per, WARMUP = +warmup, DURATION = +duration;
const HZ = 100; // USER_HZ on Linux
const payload = Buffer.from("0123456789abcdef0123456789abcdef");
let echoed = 0, open = 0, failed = 0;

function ticks() {
  const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return +f[11] + +f[12];
}

// One masked client text frame of the 32-byte payload.
function frame() {
  const key = crypto.randomBytes(4);
  const out = Buffer.alloc(2 + 4 + payload.length);
  out[0] = 0x81;
  out[1] = 0x80 | payload.length;
  key.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i] ^ key[i & 3];
  return out;
}

function startH2() {
  const http2 = require("http2");
  for (let c = 0; c < CONNS; c++) {
    const session = http2.connect(`http://${host}:${port}`, { settings: { initialWindowSize: 1 << 20 } });
    session.on("error", () => failed++);
    session.on("remoteSettings", (s) => {
      if (session._started) return;
      session._started = true;
      if (!s.enableConnectProtocol) { console.error("no SETTINGS_ENABLE_CONNECT_PROTOCOL"); process.exit(1); }
      for (let i = 0; i < PER; i++) {
        const st = session.request({ ":method": "CONNECT", ":protocol": "websocket", ":path": "/",
                                     ":scheme": "http", ":authority": hostport,
                                     "sec-websocket-version": "13" });
        let buf = Buffer.alloc(0);
        st.on("response", (h) => {
          if (h[":status"] !== 200) { failed++; return; }
          open++;
          st.write(frame());
        });
        st.on("data", (d) => {
          buf = buf.length ? Buffer.concat([buf, d]) : d;
          while (buf.length >= 2) {
            const n = buf[1] & 0x7f; // 32-byte echoes: 7-bit lengths only
            if (buf.length < 2 + n) break;
            buf = buf.subarray(2 + n);
            echoed++;
            st.write(frame());
          }
        });
        st.on("error", () => failed++);
      }
    });
  }
}

function startH1() {
  const WebSocket = require(path.join(__dirname, "../../tests/integration/node/node_modules/ws"));
  for (let c = 0; c < CONNS * PER; c++) {
    const ws = new WebSocket(`ws://${hostport}/`, { perMessageDeflate: false });
    ws.on("open", () => { open++; ws.send(payload.toString()); });
    ws.on("message", () => { echoed++; ws.send(payload.toString()); });
    ws.on("error", () => failed++);
  }
}

(mode === "h2" ? startH2 : startH1)();
setTimeout(() => {
  const t0 = ticks(), e0 = echoed, w0 = process.hrtime.bigint();
  setTimeout(() => {
    const t1 = ticks(), e1 = echoed, w1 = process.hrtime.bigint();
    const msgs = e1 - e0, secs = Number(w1 - w0) / 1e9;
    const cpu_us = ((t1 - t0) / HZ) * 1e6;
    console.log(`mode=${mode} sockets=${mode === "h2" ? CONNS : CONNS * PER} websockets=${open} ` +
                `msgs=${msgs} secs=${secs.toFixed(2)} msgs_per_s=${Math.round(msgs / secs)} ` +
                `cpu_us_per_msg=${msgs ? (cpu_us / msgs).toFixed(2) : "nan"} failed=${failed}`);
    process.exit(0);
  }, DURATION * 1000);
}, WARMUP * 1000);
