#!/usr/bin/env python3
"""tests/integration/test_h2_websocket.py: WebSocket and raw protocols over HTTP/2 extended
CONNECT (RFC 8441) against the real binary, with python3-h2 as the client (frames masked as a
client masks them): SETTINGS_ENABLE_CONNECT_PROTOCOL, the request as app.upgrade sees it, echo
over prior knowledge, h2c and TLS with ALPN h2, many WebSockets on one connection and one
stream's failure leaving the others, the answers of reject / upgrade_required / ignore and of a
bad Sec-WebSocket-Version, a raw token, permessage-deflate, backpressure through a small
stream window, the peer's RST_STREAM (1006) and the server's own close.
Run from the repo root with SWITCHYARD_BIN set (Debian's /usr/bin/python3 for python3-h2).
"""
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import traceback
import zlib

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, missing_bin, start_watchdog  # noqa: E402
import h2frames as F  # noqa: E402
import h2wsclient as W  # noqa: E402

import h2.connection  # noqa: E402
import h2.config  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402

APP = os.path.join("tests", "integration", "h2ws_app.lua")
ECP = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
results = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def kv(text):
    out = {}
    for line in text.decode().splitlines():
        k, _, v = line.partition("=")
        out[k] = v
    return out


def close_code(payload):
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


def get(c, path):
    """A plain GET on the same HTTP/2 connection; returns (status, body)."""
    sid = c.conn.get_next_available_stream_id()
    st = c.streams[sid] = W.Stream(sid)
    c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":path", path),
                              (":authority", "127.0.0.1")], end_stream=True)
    c.flush()
    c.wait(lambda: st.ended or st.reset is not None, "a response")
    return st.status, st.buf


def echo_roundtrip(c, st, text):
    c.send(st, text)
    fin, rsv1, op, data = c.recv(st, "the echo")
    check(op == W.OP_TEXT and data == text.encode(), f"echo of {text!r}: {op} {data!r}")


def t_settings(srv):
    c = W.H2WS(srv.port)
    c.wait(lambda: c.settings.get("acked"))
    check(c.settings.get(ECP) == 1, f"settings {c.settings}")
    c.close()


def t_no_upgrade_hook():
    """An app without app.upgrade does not announce extended CONNECT."""
    path = os.path.join(tempfile.mkdtemp(), "plain.lua")
    with open(path, "w") as f:
        f.write("return { request = function(req, res) res:send(200, 'x') end }\n")
    other = Server(path)
    try:
        c = W.H2WS(other.port)
        c.wait(lambda: c.settings.get("acked"))
        check(c.settings.get(ECP) in (None, 0), f"settings {c.settings}")
        c.close()
    finally:
        other.stop()


def t_echo_and_close(srv):
    c = W.H2WS(srv.port)
    st = c.connect("/echo", headers=[("sec-websocket-protocol", "other, chat")])
    check(st.status == 200, f"status {st.status}")
    check(st.headers.get("sec-websocket-protocol") == "chat", st.headers)
    check("sec-websocket-accept" not in st.headers and "upgrade" not in st.headers, st.headers)
    echo_roundtrip(c, st, "hello over h2")
    c.send(st, b"\x01\x02\x03", opcode=W.OP_BINARY)
    check(c.recv(st)[2:] == (W.OP_BINARY, b"\x01\x02\x03"), "binary echo")
    c.send(st, b"p1", opcode=W.OP_PING)
    check(c.recv(st)[2:] == (W.OP_PONG, b"p1"), "pong")
    c.send(st, (1000).to_bytes(2, "big") + b"done", opcode=W.OP_CLOSE)
    fin, rsv1, op, data = c.recv(st, "the close")
    check(op == W.OP_CLOSE and close_code(data) == 1000, f"close {op} {data!r}")
    c.wait(lambda: st.ended or st.reset is not None, "END_STREAM after the close")
    check(st.ended, f"stream ended with END_STREAM (reset {st.reset})")
    # The connection carries on.
    st2 = c.connect("/echo")
    echo_roundtrip(c, st2, "again")
    c.close()


def t_request_view(srv):
    c = W.H2WS(srv.port)
    st = c.connect("/info?x=1", headers=[("x-a", "b"), ("sec-websocket-protocol", "p1")])
    check(st.status == 200, f"status {st.status}")
    info = kv(c.recv(st, "the info")[3])
    want = {"version": "2", "method": "CONNECT", "path": "/info", "query": "x=1",
            "scheme": "http", "host": "127.0.0.1", "offer": "websocket", "offers_ws": "true",
            "protocol": "p1", "x-a": "b"}
    for k, v in want.items():
        check(info.get(k) == v, f"{k}: {info.get(k)!r} != {v!r} in {info}")
    c.close()


def t_tls_alpn(srv):
    c = W.H2WS(srv.tls_port, tls=True)
    c.wait(lambda: c.settings.get("acked"))
    check(c.settings.get(ECP) == 1, f"settings {c.settings}")
    st = c.connect("/info")
    check(st.status == 200, f"status {st.status}")
    info = kv(c.recv(st, "the info")[3])
    check(info.get("scheme") == "https" and info.get("version") == "2", info)
    echo_roundtrip(c, st, "over tls")
    c.close()


def t_h2c_upgrade(srv):
    """The settings also come after an h2c upgrade."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection().decode()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(("GET /closes HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, "
                  f"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: {settings}\r\n\r\n"
                  ).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        check(chunk, "closed during the 101")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 101"), head)
    seen = {}
    for ev in conn.receive_data(rest):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            seen.update({k: v.new_value for k, v in ev.changed_settings.items()})
    while ECP not in seen:
        chunk = sock.recv(65536)
        check(chunk, "closed before SETTINGS")
        for ev in conn.receive_data(chunk):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                seen.update({k: v.new_value for k, v in ev.changed_settings.items()})
    check(seen.get(ECP) == 1, f"settings {seen}")
    sock.close()


def t_many_and_one_fails(srv):
    c = W.H2WS(srv.port)
    streams = [c.connect("/echo") for _ in range(40)]
    check(all(s.status == 200 for s in streams), "all accepted")
    for i, s in enumerate(streams):
        c.send(s, f"m{i}")
    for i, s in enumerate(streams):
        check(c.recv(s)[3] == f"m{i}".encode(), f"echo on stream {s.id}")
    bad = streams[7]
    # An unmasked client frame: RFC 6455 5.1 says fail with 1002.
    c.send_raw(bad, W.ws_frame(W.OP_TEXT, b"x", mask=False))
    fin, rsv1, op, data = c.recv(bad, "the close of the failed stream")
    check(op == W.OP_CLOSE and close_code(data) == 1002, f"failed stream: {op} {data!r}")
    c.wait(lambda: bad.ended or bad.reset is not None, "the failed stream's end")
    for i, s in enumerate(streams):
        if s is not bad:
            echo_roundtrip(c, s, f"still {i}")
    check(c.goaway is None, f"GOAWAY {c.goaway}")
    c.close()


def t_answers(srv):
    c = W.H2WS(srv.port)
    st = c.connect("/reject")
    check(st.status == 403 and st.headers.get("x-why") == "test", f"{st.status} {st.headers}")
    c.wait(lambda: st.ended, "the 403's body")
    check(st.buf == b"no websocket here\n", st.buf)
    st = c.connect("/required")
    c.wait(lambda: st.ended, "the 426")
    check(st.status == 426 and "upgrade" not in st.headers, f"{st.status} {st.headers}")
    st = c.connect("/ignore")
    c.wait(lambda: st.ended, "the ignored request's answer")
    check(st.status == 405 and st.buf.startswith(b"request CONNECT /ignore version=2"),
          f"{st.status} {st.buf!r}")
    st = c.connect("/nothing")  # app.upgrade returns nil: app.request as well
    c.wait(lambda: st.ended, "answer")
    check(st.status == 405, f"{st.status}")
    st = c.connect("/echo", version="8")
    c.wait(lambda: st.ended or st.reset is not None, "the 426 for a bad version")
    check(st.status == 426 and st.headers.get("sec-websocket-version") == "13",
          f"{st.status} {st.headers}")
    st = c.connect("/echo", version=None)
    c.wait(lambda: st.ended or st.reset is not None, "the 426 for no version")
    check(st.status == 426, f"{st.status}")
    st = c.connect("/later")  # app.upgrade waits before it accepts
    check(st.status == 200, f"{st.status}")
    echo_roundtrip(c, st, "after a wait")
    c.close()


def t_plain_connect(srv):
    """CONNECT without :protocol (RFC 9113 8.5) is a request for app.request, as before."""
    c = F.Conn(srv.port, timeout=10)
    c.start()
    c.headers(1, [(":method", "CONNECT"), (":authority", "example.com:443")])
    headers, body, seen = c.response(1)
    status = int(dict((k if isinstance(k, str) else k.decode(), v) for k, v in (headers or {}).items()).get(":status", 0))
    check(status == 405 and body.startswith(b"request CONNECT example.com:443"),
          f"{status} {body!r}")
    c.sock.close()


def t_raw(srv):
    c = W.H2WS(srv.port)
    st = c.connect("/", protocol="echo-raw")
    check(st.status == 200, f"status {st.status}")
    c.send_raw(st, b"raw bytes\n")
    c.wait(lambda: st.buf == b"raw bytes\n", "raw echo")
    c.send_raw(st, b"last\n", end=True)
    c.wait(lambda: st.ended, "the server's END_STREAM after eof")
    check(st.buf == b"raw bytes\nlast\neof seen\n", st.buf)
    c.close()


def t_deflate(srv):
    c = W.H2WS(srv.port)
    st = c.connect("/deflate", headers=[("sec-websocket-extensions",
                                         "permessage-deflate; client_max_window_bits")])
    check(st.status == 200, f"status {st.status}")
    ext = st.headers.get("sec-websocket-extensions", "")
    check(ext.startswith("permessage-deflate"), st.headers)
    text = ("compress me " * 200).encode()
    co = zlib.compressobj(wbits=-15)
    body = co.compress(text) + co.flush(zlib.Z_SYNC_FLUSH)
    check(body.endswith(b"\x00\x00\xff\xff"), "sync flush tail")
    c.send_raw(st, W.ws_frame(W.OP_TEXT, body[:-4], rsv1=True))
    fin, rsv1, op, data = c.recv(st, "the compressed echo")
    check(rsv1 and op == W.OP_TEXT, f"rsv1 {rsv1} op {op}")
    check(zlib.decompressobj(wbits=-15).decompress(data + b"\x00\x00\xff\xff") == text,
          "inflated echo")
    c.close()


def ack(c, st):
    """Opens the stream's and the connection's windows for all DATA taken so far."""
    n, st.unacked = getattr(st, "unacked", 0), 0
    if n:
        c.conn.acknowledge_received_data(n, st.id)
        c.flush()


def t_backpressure(srv):
    # A 16 KiB stream window that this client opens only when asked.
    c = W.H2WS(srv.port, window=16384, auto_ack=False)
    st = c.connect("/flood")
    other = c.connect("/echo")
    check(st.status == 200 and other.status == 200, "accepted")
    c.send(st, "200 4096")  # 800 KiB against a 64 KiB high-water mark
    # The flooded stream's window is shut; the other stream on the connection still echoes
    # (its DATA is acknowledged by hand).
    c.send(other, "beside")
    c.wait(lambda: other.frames, "the other stream's echo")
    ack(c, other)
    check(other.frames.pop(0)[3] == b"beside", "other stream echo")
    # Now read the flood: acknowledge all that comes.
    got, done, drained = 0, None, None
    while drained is None:
        c.wait(lambda: st.frames or st.ended, "flood frames")
        while st.frames:
            fin, rsv1, op, data = st.frames.pop(0)
            if op == W.OP_BINARY:
                got += 1
            elif data.startswith(b"done"):
                done = int(data.split()[1])
            elif data.startswith(b"drained"):
                drained = int(data.split()[1])
        ack(c, st)
    check(done is not None and done > 64 * 1024, f"queued at 'done': {done}")
    check(drained <= 32 * 1024, f"drain fired at {drained} bytes queued")
    c.wait(lambda: got == 200 or st.ended, "all flood messages")
    while st.frames:
        if st.frames.pop(0)[2] == W.OP_BINARY:
            got += 1
    check(got == 200, f"{got} messages")
    c.close()


def t_raw_backpressure(srv):
    """A raw stream whose echo the client does not read: the server stops crediting that
    stream's window (bounded input), the other stream goes on, and all arrives once read."""
    c = W.H2WS(srv.port, window=16384, auto_ack=False)
    st = c.connect("/", protocol="echo-raw")
    other = c.connect("/echo")
    data = bytes(range(256)) * 4096  # 1 MiB
    sent = 0
    while sent < len(data):
        room = min(c.conn.local_flow_control_window(st.id), c.conn.max_outbound_frame_size,
                   len(data) - sent)
        if room > 0:
            c.conn.send_data(st.id, data[sent:sent + room])
            sent += room
            c.flush()
            continue
        r, _, _ = select.select([c.sock], [], [], 1.0)
        if not r:
            break  # no WINDOW_UPDATE comes: the server holds this stream back
        c.pump()
    print(f"# raw stream: the server took {sent} bytes, then held its window")
    check(sent < 512 * 1024, f"the server took {sent} bytes from a stream it cannot answer")
    c.send(other, "beside")
    c.wait(lambda: other.frames, "the other stream's echo")
    ack(c, other)
    check(other.frames.pop(0)[3] == b"beside", "other stream echo")
    while len(st.buf) < len(data):
        ack(c, st)
        room = min(c.conn.local_flow_control_window(st.id), c.conn.max_outbound_frame_size,
                   len(data) - sent)
        if room > 0:
            c.conn.send_data(st.id, data[sent:sent + room])
            sent += room
            c.flush()
        r, _, _ = select.select([c.sock], [], [], 10.0)
        check(r, f"stalled at {len(st.buf)} of {len(data)} echoed bytes")
        c.pump()
    check(st.buf == data, "the echo is the data, in order")
    c.close()


def t_peer_reset(srv):
    c = W.H2WS(srv.port)
    st = c.connect("/echo")
    echo_roundtrip(c, st, "before reset")
    c.conn.reset_stream(st.id, 8)  # CANCEL
    c.flush()
    for _ in range(100):
        status, body = get(c, "/closes")
        if b"/echo 1006" in body:
            break
    check(b"/echo 1006" in body, f"closes {body!r}")
    c.close()


def t_limits_and_server_close(srv):
    c = W.H2WS(srv.port)
    st = c.connect("/small")
    c.send(st, "y" * 2000)
    fin, rsv1, op, data = c.recv(st, "the 1009")
    check(op == W.OP_CLOSE and close_code(data) == 1009, f"{op} {data!r}")
    c.wait(lambda: st.ended or st.reset is not None, "the end of the too-big stream")
    st = c.connect("/bye")
    fin, rsv1, op, data = c.recv(st, "the server's close")
    check(op == W.OP_CLOSE and close_code(data) == 4000 and data[2:] == b"bye", f"{data!r}")
    c.send(st, (4000).to_bytes(2, "big"), opcode=W.OP_CLOSE)
    c.wait(lambda: st.ended, "END_STREAM")
    c.close()


def t_connection_drop(srv):
    """The carrier connection goes away: every WebSocket on it closes with 1006; a stream reset
    while app.upgrade waits leaves nothing behind."""
    c = W.H2WS(srv.port)
    streams = [c.connect("/echo?drop") for _ in range(3)]
    for s in streams:
        echo_roundtrip(c, s, "x")
    pending = c.connect("/later", wait=False)
    c.conn.reset_stream(pending.id, 8)
    c.flush()
    c.close()
    c2 = W.H2WS(srv.port)
    for _ in range(200):
        status, body = get(c2, "/closes")
        if body.count(b"/echo 1006") >= 4:  # one from peer_reset, three here
            break
    check(body.count(b"/echo 1006") >= 4, f"closes {body!r}")
    c2.close()


def t_shutdown():
    """SIGTERM: WebSockets over HTTP/2 hear 1001 and the server exits 0 once they answer."""
    own = Server(APP)
    try:
        c = W.H2WS(own.port)
        st = c.connect("/echo")
        echo_roundtrip(c, st, "before stop")
        own.proc.send_signal(15)
        fin, rsv1, op, data = c.recv(st, "the 1001")
        check(op == W.OP_CLOSE and close_code(data) == 1001, f"{op} {data!r}")
        try:
            c.send(st, (1001).to_bytes(2, "big"), opcode=W.OP_CLOSE)
        except h2.exceptions.ProtocolError:
            pass  # python3-h2 sends nothing more once a GOAWAY came; the grace period ends it
        own.proc.wait(timeout=30)
        check(own.proc.returncode == 0, f"exit {own.proc.returncode}")
        c.close()
    finally:
        own.stop()


def main():
    if missing_bin():
        return 0
    tmp = tempfile.mkdtemp()
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = Server(APP, args=["--tls-listen", "127.0.0.1:0", "--cert", cert, "--key", key])
    start_watchdog(srv, 240)
    tests = [("settings", lambda: t_settings(srv)),
             ("no_upgrade_hook", t_no_upgrade_hook),
             ("echo_and_close", lambda: t_echo_and_close(srv)),
             ("request_view", lambda: t_request_view(srv)),
             ("tls_alpn", lambda: t_tls_alpn(srv)),
             ("h2c_upgrade", lambda: t_h2c_upgrade(srv)),
             ("many_and_one_fails", lambda: t_many_and_one_fails(srv)),
             ("answers", lambda: t_answers(srv)),
             ("plain_connect", lambda: t_plain_connect(srv)),
             ("raw", lambda: t_raw(srv)),
             ("deflate", lambda: t_deflate(srv)),
             ("backpressure", lambda: t_backpressure(srv)),
             ("raw_backpressure", lambda: t_raw_backpressure(srv)),
             ("peer_reset", lambda: t_peer_reset(srv)),
             ("limits_and_server_close", lambda: t_limits_and_server_close(srv)),
             ("connection_drop", lambda: t_connection_drop(srv)),
             ("shutdown", t_shutdown)]
    only = os.environ.get("ONLY")
    passed = failed = 0
    for name, fn in tests:
        if only and only != name:
            continue
        try:
            fn()
            print(f"ok - {name}")
            passed += 1
        except Exception:
            print(f"not ok - {name}")
            traceback.print_exc()
            failed += 1
    code = srv.stop()
    if code != 0:
        print(f"not ok - server exit {code}; stderr: {srv.stderr()[-2000:]!r}")
        failed += 1
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
