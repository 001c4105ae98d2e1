"""tests/integration/h2wsclient.py: a WebSocket client over HTTP/2 extended CONNECT (RFC 8441)
on python3-h2, for the tests (not a test). Many streams on one connection; frames masked as a
client masks them; flow control is left to the caller when it wants a small window."""
import os
import socket
import ssl
import struct

import h2.config
import h2.connection
import h2.events
import h2.settings

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def ws_frame(opcode, payload=b"", fin=True, rsv1=False, mask=True):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
        (int.from_bytes(payload, "big") ^ int.from_bytes((key * (n // 4 + 1))[:n], "big")
         ).to_bytes(n, "big")
    return head + key + body


def parse_frames(buf):
    """Whole server frames at the front of buf: ([(fin, rsv1, opcode, payload)], rest)."""
    out = []
    while len(buf) >= 2:
        b0, b1 = buf[0], buf[1]
        n, at = b1 & 0x7F, 2
        if b1 & 0x80:
            raise AssertionError("the server masked a frame")
        if n == 126:
            if len(buf) < 4:
                break
            n, at = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, at = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < at + n:
            break
        out.append((bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, buf[at:at + n]))
        buf = buf[at + n:]
    return out, buf


class Stream:
    def __init__(self, sid):
        self.id = sid
        self.status = None
        self.headers = {}
        self.buf = b""
        self.frames = []
        self.ended = False
        self.reset = None  # the RST_STREAM error code, once one came
        self.ws = False  # a WebSocket: DATA after a 200 is parsed into frames


class H2WS:
    """One HTTP/2 connection (prior knowledge, or TLS with ALPN h2)."""

    def __init__(self, port, tls=False, timeout=10.0, window=None, auto_ack=True):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        self.tls = tls
        self.auto_ack = auto_ack
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        self.streams = {}
        self.settings = {}
        self.goaway = None
        self.closed = False
        self.wait(lambda: h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL in self.settings or
                  self.settings.get("acked"))

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self):
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return
        for ev in self.conn.receive_data(data):
            self.on_event(ev)
        self.flush()

    def on_event(self, ev):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.settings[k] = v.new_value
            self.settings["acked"] = True
        elif isinstance(ev, h2.events.ResponseReceived):
            st = self.streams[ev.stream_id]
            st.headers = dict(ev.headers)
            st.status = int(st.headers[":status"])
            if ev.stream_ended:
                st.ended = True
        elif isinstance(ev, h2.events.DataReceived):
            st = self.streams.get(ev.stream_id)
            if self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif st:
                st.unacked = getattr(st, "unacked", 0) + ev.flow_controlled_length
            if st:
                st.buf += ev.data
                frames, st.buf = parse_frames(st.buf) if st.ws and st.status == 200 else \
                    ([], st.buf)
                st.frames.extend(frames)
            if ev.stream_ended and st:
                st.ended = True
        elif isinstance(ev, h2.events.StreamEnded):
            if ev.stream_id in self.streams:
                self.streams[ev.stream_id].ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if ev.stream_id in self.streams:
                self.streams[ev.stream_id].reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev.error_code

    def wait(self, cond, what="condition"):
        while not cond():
            if self.closed:
                raise AssertionError(f"connection closed while waiting for {what}")
            self.pump()

    def connect(self, path, protocol="websocket", headers=(), version="13", wait=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", "CONNECT"), (":protocol", protocol),
                (":scheme", "https" if self.tls else "http"), (":path", path),
                (":authority", "127.0.0.1")]
        if protocol == "websocket" and version is not None:
            hdrs.append(("sec-websocket-version", version))
        hdrs.extend(headers)
        st = self.streams[sid] = Stream(sid)
        st.ws = protocol == "websocket"
        self.conn.send_headers(sid, hdrs)
        self.flush()
        if wait:
            self.wait(lambda: st.status is not None or st.reset is not None, "a response")
        return st

    def send(self, st, data, opcode=OP_TEXT, **kw):
        if isinstance(data, str):
            data = data.encode()
        self.send_raw(st, ws_frame(opcode, data, **kw))

    def send_raw(self, st, data, end=False):
        while data:
            room = min(self.conn.local_flow_control_window(st.id), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.pump()
                continue
            self.conn.send_data(st.id, data[:room], end_stream=end and len(data) <= room)
            data = data[room:]
            self.flush()

    def end(self, st):
        self.conn.end_stream(st.id)
        self.flush()

    def recv(self, st, what="a frame"):
        self.wait(lambda: st.frames or st.reset is not None or st.ended, what)
        if not st.frames:
            raise AssertionError(f"stream {st.id} ended (reset {st.reset}) waiting for {what}")
        return st.frames.pop(0)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
