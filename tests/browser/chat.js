// Two headless Chromium tabs on the chat example exchange messages over the real WebSocket,
// with permessage-deflate as Chromium offers it.
// Usage: node chat.js http://127.0.0.1:PORT/ [screenshot.png]
"use strict";
const { chromium } = require("playwright-core");

const base = process.argv[2];
const shot = process.argv[3];
let passed = 0, failed = 0;
function check(ok, what) {
  if (ok) passed++; else { failed++; console.error("FAIL: " + what); }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: 30000,
  });
  try {
    const ctx = await browser.newContext();
    const alice = await ctx.newPage();
    const bob = await ctx.newPage();
    for (const p of [alice, bob]) p.setDefaultTimeout(10000);
    await alice.goto(base + "?name=alice");
    await alice.waitForFunction(() => document.getElementById("status").textContent.includes("connected as alice"));
    await bob.goto(base + "?name=bob");
    await bob.waitForFunction(() => document.getElementById("status").textContent.includes("connected as bob"));
    // Alice sees bob join (published to the room).
    await alice.waitForFunction(() => document.getElementById("log").textContent.includes("bob joined (2 here)"));
    check(true, "join notice");

    await alice.fill("#text", "hello from alice ✓");
    await alice.click("#send");
    await bob.waitForFunction(() => document.getElementById("log").textContent.includes("alice: hello from alice ✓"));
    check(true, "bob receives alice's message");

    await bob.fill("#text", "hi alice <b>not bold</b>");
    await bob.press("#text", "Enter");
    await alice.waitForFunction(() => document.getElementById("log").textContent.includes("bob: hi alice <b>not bold</b>"));
    check(await alice.locator("#log b:text('not bold')").count() === 0, "text is not interpreted as HTML");

    // Chromium offers permessage-deflate and the example accepts it ("shared" preset).
    for (const [who, p] of [["alice", alice], ["bob", bob]]) {
      const ext = await p.evaluate(() => ws.extensions);
      check(ext.startsWith("permessage-deflate") && ext.includes("server_no_context_takeover"),
            `${who}: extension agreed (${JSON.stringify(ext)})`);
    }
    // A long message goes compressed both ways (the browser's and the server's compressor).
    const long = "compressible chat text ✓ ".repeat(70).trim();
    await alice.fill("#text", long);
    await alice.click("#send");
    await bob.waitForFunction((t) => document.getElementById("log").textContent.includes("alice: " + t), long);
    check(true, "bob receives alice's long compressed message");

    // Each tab sees its own message too (sy.publish reaches everyone in the room).
    check((await alice.textContent("#log")).includes("alice: hello from alice ✓"), "alice sees her own message");
    if (shot) await alice.screenshot({ path: shot });

    await bob.close();
    await alice.waitForFunction(() => document.getElementById("log").textContent.includes("bob left (1 here)"));
    check(true, "leave notice after the tab closes");
  } catch (e) {
    failed++;
    console.error("FAIL: " + (e && e.message ? e.message : e));
  } finally {
    await browser.close();
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
