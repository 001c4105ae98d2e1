#!/usr/bin/env python3
"""examples/lines/client.py: client for examples/lines/server.lua (stdlib only).

Sends an HTTP/1.1 request offering "Upgrade: lines/1", checks the 101 answer, then speaks
the line protocol: each command gets one reply line, printed on stdout.

Run the server:  switchyard --listen 127.0.0.1:8080 examples/lines/server.lua
Then:
  python3 examples/lines/client.py --port 8080                      # interactive prompt
  python3 examples/lines/client.py --port 8080 -c 'SET a 1' -c 'GET a'
  printf 'SET a 1\\nGET a\\nQUIT\\n' | python3 examples/lines/client.py --port 8080

Exit status: 0 done, 1 the upgrade was refused or the handshake failed, 2 the server closed
the connection before a reply arrived.
"""
import argparse
import socket
import sys

TOKEN = "lines/1"


class Closed(Exception):
    pass


class LineSocket:
    def __init__(self, sock, leftover=b""):
        self.sock = sock
        self.buf = leftover

    def send_line(self, line):
        self.sock.sendall(line.encode("utf-8") + b"\n")

    def read_line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Closed()
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")


def handshake(host, port, path, timeout):
    """Connects and upgrades; returns a LineSocket or raises RuntimeError."""
    sock = socket.create_connection((host, port), timeout=timeout)
    request = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Upgrade: {TOKEN}\r\n"
        "Connection: Upgrade\r\n"
        "\r\n"
    )
    sock.sendall(request.encode("ascii"))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed during the handshake")
        data += chunk
        if len(data) > 65536:
            raise RuntimeError("response head too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if len(status) < 2 or status[1] != "101":
        raise RuntimeError(f"upgrade refused: {lines[0]}")
    if headers.get("upgrade", "").lower() != TOKEN:
        raise RuntimeError(f"101 for another protocol: {headers.get('upgrade')!r}")
    return LineSocket(sock, rest)


def run(conn, commands, out):
    """Sends each command and prints its reply; returns the exit status."""
    for cmd in commands:
        cmd = cmd.rstrip("\r\n")
        if not cmd.strip():
            continue
        conn.send_line(cmd)
        try:
            reply = conn.read_line()
        except Closed:
            print("connection closed by the server", file=sys.stderr)
            return 2
        print(reply, file=out, flush=True)
        if cmd.strip().upper() == "QUIT" or reply == "ERR line too long":
            return 0
    return 0


def prompt_lines():
    while True:
        try:
            yield input("lines> ")
        except EOFError:
            return


def main(argv=None):
    ap = argparse.ArgumentParser(description="client for the lines/1 example protocol")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--path", default="/")
    ap.add_argument("--timeout", type=float, default=5.0, help="socket timeout, seconds")
    ap.add_argument("-c", "--command", action="append", default=[],
                    help="a command to send (repeatable); otherwise stdin is read")
    args = ap.parse_args(argv)
    try:
        conn = handshake(args.host, args.port, args.path, args.timeout)
    except (OSError, RuntimeError) as e:
        print(f"handshake failed: {e}", file=sys.stderr)
        return 1
    try:
        if args.command:
            return run(conn, args.command, sys.stdout)
        if sys.stdin.isatty():
            return run(conn, prompt_lines(), sys.stdout)
        return run(conn, sys.stdin, sys.stdout)
    except socket.timeout:
        print("timed out waiting for the server", file=sys.stderr)
        return 2
    finally:
        conn.sock.close()


if __name__ == "__main__":
    sys.exit(main())
