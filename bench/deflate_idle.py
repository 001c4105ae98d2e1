#!/usr/bin/env python3
"""bench/deflate_idle.py PORT PATH N: opens N WebSockets to 127.0.0.1:PORT/PATH offering
permessage-deflate as Chromium does ("permessage-deflate; client_max_window_bits"), sends one
compressed JSON chat event on each and reads its echo (so every per-connection compression
state the server keeps exists), then holds them all open and prints one line:
"open N compressed M" (M: connections whose echo came back compressed). Waits for a line on
stdin before closing (run by bench/deflate.sh, which reads the server's RSS meanwhile)."""
import base64
import os
import socket
import struct
import sys
import zlib

port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
MSG = (b'{"type":"message","name":"alice","text":"hello everyone, the build is green again",'
       b'"members":24,"time":1764160000.123}')


def frame(op, payload, rsv=0):
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | rsv << 4 | op, 0x80 | len(payload)) + key + masked


def read_exact(s, k):
    out = b""
    while len(out) < k:
        c = s.recv(k - len(out))
        if not c:
            raise EOFError("server closed")
        out += c
    return out


socks, compressed = [], 0
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
              .encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    head, rest = head.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    ext = [l.split(b":", 1)[1].decode().strip() for l in head.split(b"\r\n")
           if l.lower().startswith(b"sec-websocket-extensions:")]
    if ext:
        bits = 15
        for p in ext[0].split(";"):
            k, _, v = p.strip().partition("=")
            if k == "client_max_window_bits":
                bits = max(int(v), 9)
        z = zlib.compressobj(6, zlib.DEFLATED, -bits)
        payload = (z.compress(MSG) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
        s.sendall(frame(1, payload, rsv=4))
    else:
        s.sendall(frame(1, MSG))
    hdr = rest + read_exact(s, max(0, 2 - len(rest)))
    ln = hdr[1] & 0x7F
    read_exact(s, ln - (len(hdr) - 2))
    compressed += bool(hdr[0] & 0x40)
    socks.append(s)
print(f"open {len(socks)} compressed {compressed}", flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
