// tests/integration/ws_node_deflate_client.js: permessage-deflate against Node's `ws` client.
//
// Usage: node ws_node_deflate_client.js PORT (run by test_ws_deflate_node.sh, which starts the
// server with tests/integration/ws_deflate_app.lua). For each preset (shared, small, default)
// and each perMessageDeflate combination a ws client can offer (server/client no context
// takeover, server/client max window bits, all together): the agreed extension as ws saw it,
// text and binary from 0 B to 1 MiB, fragmented compressed sends (fin: false), 40 messages on
// one connection; then a zip bomb (16 MiB of zeros, compressed: close 1009). Prints
// "ok - NAME" / "not ok - NAME" per case and "N passed, N failed"; exits 1 on failure.
'use strict';

const path = require('path');
const WebSocket = require(path.join(__dirname, 'node', 'node_modules', 'ws'));

const PORT = Number(process.argv[2]);
const TIMEOUT = 20000;
const MIB = 1024 * 1024;

const cases = [];
function test(name, fn) { cases.push({ name, fn }); }

function eq(got, want, what) {
  const same = Buffer.isBuffer(want) ? Buffer.isBuffer(got) && got.equals(want) : got === want;
  if (!same) {
    const show = (v) => (v && v.length > 48 ? `<${v.length} long>` : JSON.stringify(v));
    throw new Error(`${what}: want ${show(want)}, got ${show(got)}`);
  }
}

class Client {
  constructor(pathname, pmd) {
    this.ws = new WebSocket(`ws://127.0.0.1:${PORT}${pathname}`,
      { perMessageDeflate: pmd, maxPayload: 64 * MIB });
    this.events = [];
    this.waiters = [];
    const push = (ev) => { const w = this.waiters.shift(); if (w) w(ev); else this.events.push(ev); };
    this.ws.on('message', (data, isBinary) => push({ type: 'message', data, isBinary }));
    this.ws.on('close', (code) => push({ type: 'close', code }));
    this.ws.on('error', (err) => push({ type: 'error', err }));
  }

  open() {
    return new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
  }

  async next(type) {
    const ev = this.events.shift() || await new Promise((r) => this.waiters.push(r));
    if (ev.type !== type) {
      throw new Error(`want ${type}, got ${ev.type} ${ev.err ? ev.err.message : ''} ${ev.code || ''}`);
    }
    return ev;
  }

  send(data, opts = {}) {
    return new Promise((resolve, reject) => this.ws.send(data, opts, (e) => (e ? reject(e) : resolve())));
  }

  async echo(data, opts = {}) {
    await this.send(data, opts);
    const ev = await this.next('message');
    return ev.isBinary ? ev.data : ev.data.toString('utf8');
  }

  async close() {
    this.ws.close(1000);
    const ev = await this.next('close');
    eq(ev.code, 1000, 'close code');
  }
}

function chat(n, seed = 0) {
  const lines = [];
  for (let i = 0, size = 0; size < n; i++) {
    const line = `{"type":"message","user":"user${(i + seed) % 7}","seq":${i},"text":"grüße ${i * 13 + seed}"}\n`;
    lines.push(line);
    size += Buffer.byteLength(line);
  }
  return Buffer.from(lines.join('')).subarray(0, n).toString('utf8').replace(/\uFFFD/g, '');
}

const OFFERS = {
  'default offer': {},
  serverNoContextTakeover: { serverNoContextTakeover: true },
  clientNoContextTakeover: { clientNoContextTakeover: true },
  'serverMaxWindowBits 9': { serverMaxWindowBits: 9 },
  'serverMaxWindowBits 8': { serverMaxWindowBits: 8 },
  'clientMaxWindowBits 10': { clientMaxWindowBits: 10 },
  'all four': { serverNoContextTakeover: true, clientNoContextTakeover: true,
    serverMaxWindowBits: 12, clientMaxWindowBits: 12 },
};

for (const preset of ['shared', 'small', 'default']) {
  for (const [oname, offer] of Object.entries(OFFERS)) {
    test(`${preset}: ${oname}`, async () => {
      const c = new Client(`/echo/${preset}`, { threshold: 0, ...offer });
      await c.open();
      // What ws agreed to, from the server's answer.
      const pmd = c.ws._extensions['permessage-deflate'];
      if (!pmd) throw new Error(`extensions: ${JSON.stringify(c.ws.extensions)}`);
      if (preset === 'shared' && !pmd.params.server_no_context_takeover) {
        throw new Error(`shared: ${JSON.stringify(pmd.params)}`);
      }
      for (const n of [0, 1, 100, 5000, 65536, 300000, MIB]) {
        const m = chat(n, n);
        eq(await c.echo(m), m, `text ${n}`);
        const b = Buffer.from(m);
        eq(await c.echo(b, { binary: true }), b, `binary ${n}`);
      }
      // A compressed message in three fragments.
      const parts = [chat(4000, 1), chat(50, 2), chat(20000, 3)];
      await c.send(parts[0], { fin: false });
      await c.send(parts[1], { fin: false });
      eq(await c.echo(parts[2], { fin: true }), parts.join(''), 'fragmented');
      for (let i = 0; i < 40; i++) {
        const m = chat(80 + i * 7, i);
        eq(await c.echo(m), m, `message ${i}`);
      }
      await c.close();
    });
  }
}

test('zip bomb: 16 MiB of zeros compressed by the client closes 1009', async () => {
  const c = new Client('/echo/default', { threshold: 0 });
  await c.open();
  c.ws.send(Buffer.alloc(16 * MIB));
  const ev = await c.next('close');
  eq(ev.code, 1009, 'close code');
  const d = new Client('/echo/shared', {});
  await d.open();
  eq(await d.echo('still serving'), 'still serving', 'echo after');
  await d.close();
});

async function main() {
  if (!PORT) {
    console.log('usage: node ws_node_deflate_client.js PORT');
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  let passed = 0;
  let failed = 0;
  for (const { name, fn } of cases) {
    const t0 = Date.now();
    let timer;
    try {
      await Promise.race([fn(), new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${TIMEOUT} ms`)), TIMEOUT);
      })]);
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
