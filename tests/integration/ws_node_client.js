// tests/integration/ws_node_client.js: the WebSocket layer against Node's `ws` client.
//
// Usage: node ws_node_client.js PORT   (run by test_ws_node.sh, which starts the server with
// tests/integration/ws_clients_app.lua and installs `ws` into tests/integration/node/).
// Cases: echo of text and binary messages from 0 B to 16 MiB, fragmented sends (`fin: false`),
// 16 MiB in 64-byte fragments, close codes in both directions, subprotocol negotiation, pings
// both ways, a too-big message. Every case is bounded by a timer. Prints "ok - NAME" /
// "not ok - NAME" per case and a final "N passed, N failed"; exits 1 when a case failed.
'use strict';

const path = require('path');
const http = require('http');
const crypto = require('crypto');
const WebSocket = require(path.join(__dirname, 'node', 'node_modules', 'ws'));

const PORT = Number(process.argv[2]);
const URL_BASE = `ws://127.0.0.1:${PORT}`;
const TIMEOUT = 5000;
const BIG_TIMEOUT = 60000;
const MIB = 1024 * 1024;

const cases = [];
function test(name, fn, timeout = TIMEOUT) { cases.push({ name, fn, timeout }); }

function assertEq(got, want, what) {
  const same = Buffer.isBuffer(want) ? Buffer.isBuffer(got) && got.equals(want) : got === want;
  if (!same) {
    const show = (v) => {
      if (Buffer.isBuffer(v)) return `<Buffer of ${v.length}: ${v.subarray(0, 16).toString('hex')}...>`;
      if (typeof v === 'string' && v.length > 48) return `<string of ${v.length}: ${JSON.stringify(v.slice(0, 16))}...>`;
      return JSON.stringify(v);
    };
    throw new Error(`${what}: want ${show(want)}, got ${show(got)}`);
  }
}

// A connection whose events are queued, so a case can await them in order.
class Client {
  constructor(pathname, protocols, opts = {}) {
    this.ws = new WebSocket(URL_BASE + pathname, protocols, { maxPayload: 64 * MIB, ...opts });
    this.events = [];
    this.waiters = [];
    const push = (ev) => {
      const w = this.waiters.shift();
      if (w) w(ev); else this.events.push(ev);
    };
    this.ws.on('message', (data, isBinary) => push({ type: 'message', data, isBinary }));
    this.ws.on('pong', (data) => push({ type: 'pong', data }));
    this.ws.on('close', (code, reason) => push({ type: 'close', code, reason: reason.toString() }));
    this.ws.on('error', (err) => push({ type: 'error', err }));
  }

  open() {
    return new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
  }

  next() {
    const ev = this.events.shift();
    if (ev) return Promise.resolve(ev);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async expect(type) {
    const ev = await this.next();
    if (ev.type !== type) {
      throw new Error(`want ${type}, got ${ev.type} ${ev.err ? ev.err.message : ''}` +
        (ev.type === 'close' ? ` ${ev.code} ${ev.reason}` : ''));
    }
    return ev;
  }

  async message() {
    const ev = await this.expect('message');
    return ev.isBinary ? ev.data : ev.data.toString('utf8');
  }

  send(data, opts = {}) {
    return new Promise((resolve, reject) => {
      this.ws.send(data, opts, (err) => (err ? reject(err) : resolve()));
    });
  }

  async closeAndWait(code, reason) {
    this.ws.close(code, reason);
    return this.expect('close');
  }

  terminate() { this.ws.terminate(); }
}

async function connect(pathname = '/echo', protocols) {
  const c = new Client(pathname, protocols);
  await c.open();
  return c;
}

function httpGet(pathname) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: PORT, path: pathname, timeout: TIMEOUT }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('http timeout')));
    req.on('error', reject);
  });
}

function textOf(n) {
  const unit = 'aé€😀'; // 1 + 2 + 3 + 4 bytes
  const s = unit.repeat(Math.floor(n / 10));
  return s + 'x'.repeat(n - Buffer.byteLength(s));
}

// ---- cases ---------------------------------------------------------------------------------

for (const n of [0, 1, 125, 126, 65535, 65536, MIB, 16 * MIB]) {
  test(`echo text ${n} bytes`, async () => {
    const c = await connect();
    const msg = textOf(n);
    assertEq(Buffer.byteLength(msg), n, 'message size');
    await c.send(msg);
    assertEq(await c.message(), msg, 'echo');
    assertEq((await c.closeAndWait(1000)).code, 1000, 'close code');
  }, BIG_TIMEOUT);
  test(`echo binary ${n} bytes`, async () => {
    const c = await connect();
    const msg = crypto.randomBytes(n);
    await c.send(msg, { binary: true });
    assertEq(await c.message(), msg, 'echo');
    assertEq((await c.closeAndWait(1000)).code, 1000, 'close code');
  }, BIG_TIMEOUT);
}

test('messages in order on one connection', async () => {
  const c = await connect();
  const msgs = [];
  for (let i = 0; i < 200; i++) msgs.push(i % 2 ? `m${i}` : Buffer.alloc(i, i % 256));
  for (const m of msgs) c.ws.send(m, { binary: Buffer.isBuffer(m) });
  for (let i = 0; i < msgs.length; i++) assertEq(await c.message(), msgs[i], `message ${i}`);
  await c.closeAndWait(1000);
});

test('fragmented text (fin: false), code point split across fragments', async () => {
  const c = await connect();
  const bytes = Buffer.from('fragménted 😀 €', 'utf8');
  // Split inside "é", inside the emoji and inside the euro sign.
  const cuts = [6, 13, 18, bytes.length];
  let start = 0;
  for (let i = 0; i < cuts.length; i++) {
    await c.send(bytes.subarray(start, cuts[i]), { binary: false, fin: i === cuts.length - 1 });
    start = cuts[i];
  }
  assertEq(await c.message(), 'fragménted 😀 €', 'echo');
  await c.closeAndWait(1000);
});

test('fragmented binary (fin: false) with an empty fragment', async () => {
  const c = await connect();
  const parts = [Buffer.from([0, 1]), Buffer.alloc(0), Buffer.alloc(1000, 0xff), Buffer.from([2])];
  for (let i = 0; i < parts.length; i++) {
    await c.send(parts[i], { binary: true, fin: i === parts.length - 1 });
  }
  assertEq(await c.message(), Buffer.concat(parts), 'echo');
  await c.closeAndWait(1000);
});

test('ping between fragments', async () => {
  const c = await connect();
  await c.send('one ', { fin: false });
  c.ws.ping('mid');
  assertEq((await c.expect('pong')).data.toString(), 'mid', 'pong payload');
  await c.send('two', { fin: true });
  assertEq(await c.message(), 'one two', 'echo');
  await c.closeAndWait(1000);
});

test('16 MiB binary in 64-byte fragments', async () => {
  const c = await connect();
  const data = crypto.randomBytes(16 * MIB);
  for (let off = 0; off < data.length; off += 64) {
    c.ws.send(data.subarray(off, off + 64), { binary: true, fin: off + 64 >= data.length });
  }
  assertEq(await c.message(), data, 'echo');
  await c.closeAndWait(1000);
}, BIG_TIMEOUT);

test('16 MiB text in 64-byte fragments', async () => {
  const c = await connect();
  const text = textOf(16 * MIB);
  const data = Buffer.from(text, 'utf8');
  for (let off = 0; off < data.length; off += 64) {
    c.ws.send(data.subarray(off, off + 64), { binary: false, fin: off + 64 >= data.length });
  }
  assertEq(await c.message(), text, 'echo');
  await c.closeAndWait(1000);
}, BIG_TIMEOUT);

test('message over 16 MiB -> server closes with 1009', async () => {
  const c = await connect();
  c.ws.send(Buffer.alloc(16 * MIB + 1), { binary: true }, () => {});
  const ev = await c.expect('close');
  assertEq(ev.code, 1009, 'close code');
}, BIG_TIMEOUT);

for (const [code, reason] of [[1000, 'bye'], [1001, 'going'], [3000, 'app'], [4001, 'custom é']]) {
  test(`client closes with ${code} -> echoed, app sees code and reason`, async () => {
    const c = await connect();
    await c.send('before close');
    assertEq(await c.message(), 'before close', 'echo');
    const ev = await c.closeAndWait(code, reason);
    assertEq(ev.code, code, 'close code echoed by the server');
    const res = await httpGet('/last-close');
    assertEq(`${res.status} ${res.body}`, `200 code=${code} reason=${reason}`, '/last-close');
  });
}

test('client closes without a code -> 1005 on both sides', async () => {
  const c = await connect();
  const ev = await c.closeAndWait();
  assertEq(ev.code, 1005, 'close code of the empty close frame from the server');
  const res = await httpGet('/last-close');
  assertEq(`${res.status} ${res.body}`, '200 code=1005 reason=', '/last-close');
});

for (const [code, reason] of [[1000, 'done'], [1001, 'away'], [3000, 'x'], [4999, 'last_code']]) {
  test(`server closes with ${code} -> client gets code and reason`, async () => {
    const c = await connect(`/close?code=${code}&reason=${reason}`);
    await c.send('close please');
    const ev = await c.expect('close');
    assertEq(`${ev.code} ${ev.reason}`, `${code} ${reason}`, 'close');
  });
}

for (const [offered, chosen] of [[['v1.switchyard'], 'v1.switchyard'],
  [['v1.switchyard', 'v2.switchyard'], 'v2.switchyard'],
  [['v2.switchyard', 'v1.switchyard'], 'v2.switchyard'],
  [['other', 'v1.switchyard'], 'v1.switchyard'],
  [undefined, '']]) {
  test(`subprotocol: client offers ${JSON.stringify(offered)} -> "${chosen}"`, async () => {
    const c = await connect('/info', offered);
    assertEq(c.ws.protocol, chosen, 'negotiated subprotocol');
    await c.send('info?');
    assertEq(await c.message(), `path=/info subprotocol=${chosen || 'none'}`, 'ws.subprotocol in Lua');
    await c.closeAndWait(1000);
  });
}

test('subprotocol: client offers ["other"] -> none chosen (ws then refuses the connection)', async () => {
  // RFC 6455 lets the server choose none; ws 8 fails such a handshake on its side.
  const c = new Client('/info', ['other']);
  try {
    await c.open();
  } catch (err) {
    assertEq(err.message, 'Server sent no subprotocol', 'ws handshake error');
    return;
  }
  throw new Error(`connected with subprotocol "${c.ws.protocol}"`);
});

test('ping from the client -> pong with the payload; app ping handler sees it', async () => {
  const c = await connect('/keepalive');
  c.ws.ping(Buffer.from('node-ping'));
  // The pong (core) and the app's "ping:..." message may come in either order.
  const seen = [await c.next(), await c.next()].map((ev) =>
    ev.type === 'pong' ? `pong ${ev.data}` : `${ev.type} ${ev.data}`).sort();
  assertEq(seen.join(' | '), 'message ping:node-ping | pong node-ping', 'events');
  await c.closeAndWait(1000);
});

test('server keepalive ping -> ws answers, app pong handler fires', async () => {
  const c = await connect('/keepalive');
  assertEq(await c.message(), 'pong:', 'pong handler message');
  await c.closeAndWait(1000);
});

test('20 clients at once, 50 messages each', async () => {
  await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    const c = await connect();
    for (let j = 0; j < 50; j++) {
      const m = `client ${i} message ${j}`;
      await c.send(m);
      assertEq(await c.message(), m, 'echo');
    }
    await c.closeAndWait(1000);
  }));
}, BIG_TIMEOUT);

// ---- runner ----------------------------------------------------------------------------------

async function main() {
  if (!PORT) {
    console.log('usage: node ws_node_client.js PORT');
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  const only = process.env.WS_CASE;
  let passed = 0;
  let failed = 0;
  for (const { name, fn, timeout } of cases) {
    if (only && !name.includes(only)) continue;
    const t0 = Date.now();
    let timer;
    try {
      await Promise.race([
        fn(),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms`)), timeout); }),
      ]);
      passed++;
      console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(2)} s)`);
    } catch (err) {
      failed++;
      console.log(`not ok - ${name}: ${err && err.message}`);
    } finally {
      clearTimeout(timer);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.log(`not ok - runner: ${err && err.stack}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
