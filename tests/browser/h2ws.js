// Headless Chromium loads a page over HTTPS with HTTP/2 and opens a wss:// WebSocket to the same
// origin; the page shows what app.upgrade saw (version "2", method "CONNECT": an RFC 8441
// extended CONNECT on the page's HTTP/2 connection).
// Usage: node h2ws.js https://127.0.0.1:PORT/
"use strict";
const { chromium } = require("playwright-core");

const base = process.argv[2];
let passed = 0, failed = 0;
function check(ok, what) {
  if (ok) passed++; else { failed++; console.error("FAIL: " + what); }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--ignore-certificate-errors",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: 30000,
  });
  try {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await ctx.newPage();
    page.setDefaultTimeout(15000);
    await page.goto(base);
    const proto = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
    check(proto === "h2", `page over HTTP/2 (nextHopProtocol ${proto})`);
    await page.waitForFunction(() => document.title.startsWith("got") || document.title === "error");
    const title = await page.title();
    console.log("page title: " + title);
    check(title.includes("version=2"), "the WebSocket came as HTTP/2 (req.version 2)");
    check(title.includes("method=CONNECT"), "as an extended CONNECT");
    check(title.includes("offer=websocket") && title.includes("scheme=https"), "offer and scheme");
  } catch (e) {
    check(false, String(e));
  } finally {
    await browser.close();
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
