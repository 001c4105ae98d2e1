#!/usr/bin/env python3
"""tests/integration/test_ws_inflate_ratio.py: permessage-deflate messages that inflate far
more than they weigh.

A raw-socket client agrees on permessage-deflate (the "shared" preset of bounds_app.lua's
/deflate) and sends 40 messages of about 1 KiB that each inflate to 1 MiB of zeros (within
max_message_size): an echo server inflated and compressed 40 MiB for 40 KiB of upload. The
server now inflates at most 64 KiB plus max_inflate_ratio (100) times the compressed bytes a
connection sent, so the connection closes with 1008 before a single such message is echoed.
Ordinary compressed data (JSON-like text, a few times smaller than it inflates) still
echoes, and another client is served meanwhile. The server's CPU time is printed, not
asserted.

Run from the repo root with SWITCHYARD_BIN set. Stdlib only; bounded waits.
"""
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attackers import (BINARY, MIB, TEXT, WS, cpu_seconds, deflate_message,  # noqa: E402
                       frame, http_get, inflate_message, run)

OFFER = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
MESSAGES = 40


def echo(ws, opcode, data):
    ws.send(frame(opcode, deflate_message(data), rsv=4))
    f = ws.read_frame(30)
    assert f is not None, "no echo"
    fin, rsv, op, payload = f
    got = inflate_message(payload) if rsv & 4 else payload
    assert (op, got) == (opcode, data), f"echo differs ({op}, {len(got)} bytes)"


def chat(n):
    """n bytes of JSON events: compresses a few times, as application data does."""
    out, i = [], 0
    while sum(map(len, out)) < n:
        out.append(json.dumps({"id": i, "user": f"user{i * 7919 % 1000}", "room": i % 13,
                               "text": f"message number {i} at {i * 31337 % 86400}"}))
        i += 1
    return "\n".join(out).encode()[:n]


def bombs(srv):
    pid, port = srv.proc.pid, srv.port
    ws = WS(port, "/deflate", OFFER)
    assert "permessage-deflate" in ws.head, ws.head
    bomb = deflate_message(bytes(MIB))
    cpu0 = cpu_seconds(pid)
    ws.send(b"".join(frame(BINARY, bomb, rsv=4) for _ in range(MESSAGES)))
    code, before = ws.until_close(60)
    cpu = cpu_seconds(pid) - cpu0
    ws.close()
    print(f"# {MESSAGES} messages of {len(bomb)} bytes inflating to 1 MiB: {len(before)} echoed, "
          f"close {code}, server CPU {cpu:.2f} s", flush=True)
    status, _ = http_get(port)
    assert status == 200, f"another client got {status}"
    assert code == 1008, f"close code {code} after {len(before)} echoes"
    assert len(before) == 0, f"{len(before)} bombs were echoed"
    return f"{len(bomb)}-byte messages inflating to 1 MiB: close 1008, server CPU {cpu:.2f} s"


def ordinary(srv):
    ws = WS(srv.port, "/deflate", OFFER)
    data = chat(MIB)
    ratio = len(data) / len(deflate_message(data))
    echo(ws, BINARY, b"x" * 60000)  # within the 64 KiB every connection may inflate freely
    for _ in range(3):
        echo(ws, TEXT, data)
    ws.close()
    return f"1 MiB of JSON compressing {ratio:.1f}:1 echoed 3 times, 60 KB of one byte"


if __name__ == "__main__":
    sys.exit(run([
        ("messages inflating 1000:1 close 1008 before any is echoed", bombs),
        ("ordinary compressed messages still echo", ordinary),
    ], watchdog=200))
