#!/usr/bin/env python3
"""Test backend for warren-proxy's integration test: an HTTP/1.1 server on
127.0.0.1:PORT that answers
  GET  /echo...      200 JSON of what it saw (Host, X-Forwarded-*, tokens)
  POST /upload       reads the body (Content-Length or chunked) in pieces,
                     answers {"received": N}
  GET  /ws           WebSocket (RFC 6455) echo of text/binary frames
  GET  /chunked      a chunked response
  GET  /silent/TAG    a chunked response that sends one chunk, then stays
                     silent until its connection is closed (at most 60 s)
  GET  /closed/TAG    {"closed": true} once /silent/TAG saw its close
Prints "READY <port>..." once listening (-1 for a port it could not bind). Usage: backend.py PORT..."""
import base64
import hashlib
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLOSED = set()  # tags of /silent streams whose connection was closed


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self._websocket()
        if self.path.startswith("/silent/"):
            return self._silent(self.path[len("/silent/"):])
        if self.path.startswith("/closed/"):
            return self._json(200, {"closed": self.path[len("/closed/"):] in CLOSED})
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self._json(200, {
            "path": self.path,
            "host": self.headers.get("Host"),
            "x_forwarded_host": self.headers.get("X-Forwarded-Host"),
            "x_forwarded_for": self.headers.get("X-Forwarded-For"),
            "x_forwarded_proto": self.headers.get("X-Forwarded-Proto"),
            "x_access_token": self.headers.get("X-Access-Token"),
            "connection": self.headers.get("Connection"),
            "port": self.server.server_address[1],
        })

    def do_POST(self):
        received = 0
        digest = hashlib.sha256()
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    break
                left = size
                while left:
                    piece = self.rfile.read(min(left, 65536))
                    if not piece:
                        return
                    digest.update(piece)
                    left -= len(piece)
                received += size
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                piece = self.rfile.read(min(left, 1 << 20))
                if not piece:
                    return
                digest.update(piece)
                received += len(piece)
                left -= len(piece)
        self._json(200, {"received": received, "sha256": digest.hexdigest()})

    def _silent(self, tag):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"6\r\nstart\n\r\n")
        self.wfile.flush()
        self.connection.settimeout(60)
        try:
            gone = self.connection.recv(1) == b""
        except OSError:
            gone = True
        if gone:
            CLOSED.add(tag)
        self.close_connection = True

    def _websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        rfile = self.rfile
        while True:
            head = rfile.read(2)
            if len(head) < 2:
                break
            opcode = head[0] & 0x0F
            masked = head[1] & 0x80
            length = head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(rfile.read(2), "big")
            elif length == 127:
                length = int.from_bytes(rfile.read(8), "big")
            mask = rfile.read(4) if masked else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(rfile.read(length)))
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                break
            out = bytes([0x80 | opcode])
            if len(data) < 126:
                out += bytes([len(data)])
            else:
                out += bytes([126]) + len(data).to_bytes(2, "big")
            self.wfile.write(out + data)
            self.wfile.flush()
        self.close_connection = True


def main():
    servers = []
    ports = []
    for port in sys.argv[1:]:
        try:
            server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
        except OSError:
            ports.append("-1")  # busy (e.g. 49983 on a shared machine)
            continue
        server.daemon_threads = True
        servers.append(server)
        ports.append(str(server.server_address[1]))
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("READY " + " ".join(ports), flush=True)
    try:
        sys.stdin.read()  # exits when the test closes our stdin
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
