#!/usr/bin/env python3
"""tests/integration/test_h2_websocket_ops.py: WebSockets over HTTP/2 extended CONNECT (RFC 8441)
seen by operations: the access log's upgrade and close lines, the metrics page, and a named
handler set that a reload (SIGHUP) reaches on a live stream. python3-h2 is the client; the
metrics page is parsed by prometheus_client's parser. Nothing is timed."""
import json
import os
import signal
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, missing_bin, start_watchdog  # noqa: E402
import h2wsclient as W  # noqa: E402
from test_metrics import Proc, families, scrape, val  # noqa: E402

APP_V1 = """
local sy = require "switchyard"
local app = { handlers = {} }
app.handlers.echo = {
  message = function(ws, data) ws:send("v1 " .. data) end,
}
function app.request(req, res) res:send(405, "request " .. req.method .. "\\n") end
function app.upgrade(req)
  if req.path == "/named" then return sy.accept("websocket", "echo") end
  if req.path == "/reject" then return sy.reject(403, "no\\n") end
  if req.path == "/required" then return sy.upgrade_required("websocket") end
  if req.path == "/ignore" then return sy.ignore() end
  if req.path == "/raises" then error("boom") end
end
return app
"""
APP_V2 = APP_V1.replace('"v1 "', '"v2 "')


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def wait_for(cond, what):
    deadline = time.monotonic() + TIMEOUT * 4
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def access_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def echo(c, st, text):
    c.send(st, text)
    fin, rsv1, op, data = c.recv(st, f"the echo of {text!r}")
    check(op == W.OP_TEXT, f"opcode {op}")
    return data.decode()


def main():
    if missing_bin():
        return 0
    tmp = tempfile.mkdtemp()
    app = os.path.join(tmp, "app.lua")
    log = os.path.join(tmp, "access.log")
    with open(app, "w") as f:
        f.write(APP_V1)
    p = Proc(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--access-log", log,
              "--log-format", "json", app])
    start_watchdog(p, 120)
    failed = 0
    try:
        c = W.H2WS(p.port)
        live = c.connect("/named")
        check(live.status == 200, f"accept: {live.status}")
        check(echo(c, live, "a") == "v1 a", "v1 code before the reload")
        answers = {}
        for path in ("/reject", "/required", "/ignore", "/raises"):
            st = c.connect(path)
            c.wait(lambda: st.ended or st.reset is not None, f"the answer to {path}")
            answers[path] = st.status
        check(answers == {"/reject": 403, "/required": 426, "/ignore": 405, "/raises": 500},
              f"answers {answers}")
        print("ok - decisions over extended CONNECT")

        # A reload reaches the live stream's named handler set.
        with open(app, "w") as f:
            f.write(APP_V2)
        os.kill(p.proc.pid, signal.SIGHUP)
        wait_for(lambda: echo(c, live, "b") == "v2 b", "v2 code on the live stream")
        print("ok - a reload reaches a live WebSocket over HTTP/2 (named handler set)")

        c.send(live, (1000).to_bytes(2, "big"), opcode=W.OP_CLOSE)
        fin, rsv1, op, data = c.recv(live, "the close")
        check(op == W.OP_CLOSE, f"close echo {op}")
        c.wait(lambda: live.ended or live.reset is not None, "the stream's end")

        lines = wait_for(lambda: [r for r in access_lines(log) if r.get("event") == "close"] and
                         access_lines(log), "the close line")
        ups = {r["target"]: r for r in lines if r.get("event") == "upgrade"}
        for path, decision, status in (("/named", "accept", 200), ("/reject", "reject", 403),
                                       ("/required", "426", 426), ("/ignore", "ignore", 405),
                                       ("/raises", "error", 500)):
            r = ups.get(path)
            check(r is not None, f"no upgrade line for {path}: {lines}")
            check(r["proto"] == "HTTP/2" and r["method"] == "CONNECT" and
                  r["upgrade"] == "websocket" and str(r["decision"]) == decision and
                  r["status"] == status and r["stream"] > 0, f"{path}: {r}")
        check(ups["/named"].get("protocol") == "websocket", ups["/named"])
        close = [r for r in lines if r.get("event") == "close"][0]
        check(close["proto"] == "websocket" and close["conn"] == ups["/named"]["conn"] and
              close["close_recv"] == 1000 and close["close_sent"] == 1000 and
              close["msgs_in"] == close["msgs_out"] and close["msgs_in"] >= 2, close)
        msgs = close["msgs_in"]
        print("ok - access log: upgrade lines for every decision and the close line")

        status, _, body = scrape(p.mport)
        check(status == 200, f"scrape {status}")
        f = families(body.decode())
        for outcome, n in (("accept", 1), ("reject", 1), ("upgrade_required", 1),
                           ("ignore", 1), ("error", 1)):
            got = val(f, "switchyard_upgrades", "switchyard_upgrades_total",
                      token="websocket", outcome=outcome)
            check(got == n, f"upgrades {outcome}: {got}")
        check(val(f, "switchyard_connections", "switchyard_connections_total",
                  protocol="websocket") == 1, "one websocket connection")
        check(val(f, "switchyard_websocket_messages", "switchyard_websocket_messages_total",
                  direction="in") == msgs, "messages in")
        check(val(f, "switchyard_websocket_closes", "switchyard_websocket_closes_total",
                  code="1000", direction="in") == 1, "close in")
        # 403, 405 and 500 are responses; the accept's 200 is an upgrade, not a response.
        check(val(f, "switchyard_http_responses", "switchyard_http_responses_total",
                  protocol="h2", **{"class": "2xx"}) == 0, "no 2xx over h2")
        check(val(f, "switchyard_http_responses", "switchyard_http_responses_total",
                  protocol="h2", **{"class": "4xx"}) == 3, "4xx over h2")
        print("ok - metrics count extended CONNECT decisions and the stream's WebSocket")
        c.close()
    except Exception:
        traceback.print_exc()
        print("not ok - h2 websocket operations")
        failed = 1
    code = p.stop()
    if code != 0:
        print(f"not ok - server exit {code}; stderr {p.stderr()[-2000:]!r}")
        failed = 1
    print(f"{1 - failed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(main())
