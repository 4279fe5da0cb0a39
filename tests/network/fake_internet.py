#!/usr/bin/env python3
"""The fake internet's servers (tests/network/netenv.sh). Every answer says
which local address served it and what Host/SNI it saw:
  :80   HTTP   -> "ip=<local> host=<Host>" ("GET /hold": no answer, held open;
                  "GET /bytes/N": N bytes, byte i = i mod 251)
  :443  HTTPS  -> "ip=<local> host=<Host> sni=<SNI>" (test CA)
  :9000 hold   -> accepts and keeps the connection open until the peer closes
  :9001 sink   -> reads everything, then answers with the byte count
  :9002 echo   -> "ok\n" to each connection, then close (connection rate)
  192.0.2.30:80  keep-alive HTTP: answers every request on a connection and
                 appends each Host it saw to <dir>/keepalive.log
169.254.169.254 and 10.99.0.10 serve the same as the documentation addresses.
"""
import os, socket, ssl, sys, threading

d = sys.argv[1]

def http_reply(conn, extra=""):
    data = b""
    conn.settimeout(10)
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    if data.startswith(b"GET /hold "):
        while conn.recv(4096):  # never answers: a long-lived connection
            pass
        return
    if data.startswith(b"GET /bytes/"):  # N bytes, byte i = i mod 251
        size = int(data[11:data.index(b" ", 11)])
        body = (bytes(range(251)) * (size // 251 + 1))[:size]
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % size + body)
        return
    host = "-"
    for line in data.split(b"\r\n")[1:]:
        if line.lower().startswith(b"host:"):
            host = line[5:].strip().decode("latin-1")
    body = ("ip=%s host=%s%s\n" % (conn.getsockname()[0], host, extra)).encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)

# 198.51.100.20 stays free for bench/network's own C servers.
ADDRESSES = ["192.0.2.10", "192.0.2.11", "192.0.2.20", "198.51.100.10", "203.0.113.10",
             "169.254.169.254", "10.99.0.10"]

def serve(port, handler):
    for address in ADDRESSES:
        listen(address, port, handler)

def listen(address, port, handler):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(1024)
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=guard, args=(handler, c), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()

def guard(handler, c):
    try:
        handler(c)
    except Exception:
        pass
    finally:
        try:
            c.close()
        except Exception:
            pass

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
def on_sni(ssl_socket, name, _ctx):
    ssl_socket.sni_name = name
ctx.sni_callback = on_sni

def https_handler(c):
    c.settimeout(10)
    t = ctx.wrap_socket(c, server_side=True)
    http_reply(t, " sni=%s" % getattr(t, "sni_name", None))

def hold(c):
    while c.recv(4096):
        pass

def sink(c):
    n = 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        n += len(b)
    c.sendall(b"%d\n" % n)

def echo(c):
    c.sendall(b"ok\n")

log_lock = threading.Lock()

def keepalive(conn):
    conn.settimeout(30)
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        host = "-"
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"host:"):
                host = line[5:].strip().decode("latin-1")
        with log_lock, open(os.path.join(d, "keepalive.log"), "a") as f:
            f.write(host + "\n")
        body = ("ip=192.0.2.30 host=%s\n" % host).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

listen("192.0.2.30", 80, keepalive)
serve(80, http_reply)
serve(443, https_handler)
serve(9000, hold)
serve(9001, sink)
serve(9002, echo)
open(os.path.join(d, "ready"), "w").close()
threading.Event().wait()
