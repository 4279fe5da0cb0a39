"""Fault (labels e2e, pipeline, slow): PostgreSQL outage seen by warren-api.
The shared dev-stack server keeps running (other tests use it): the API
reaches it through a TCP forwarder owned by this test, which the test cuts
(listener closed, every connection reset) and restores on the same port.
During the outage the API answers 503 (list, get, create); afterwards it
recovers by itself, without a restart: lists and creates succeed again."""
import os
import socket
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
from faults import Stack, check, wait_for  # noqa: E402


class Forwarder:
    """127.0.0.1:<port> -> target; cut() drops everything, restore() listens again."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.port = faults.stack_free_port()
        self.lock = threading.Lock()
        self.connections = []
        self.listener = None
        self.restore()

    def restore(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self):
        # shutdown first: on Linux close() alone leaves a socket that a
        # thread is blocked in accept() on still listening.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for conn in self.connections:
                try:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self.connections = []

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    faults.require_root()
    with Stack("pgout") as stack:
        stack.start(api=False)
        stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "1000")
        url = urllib.parse.urlsplit(stack.pg_url)
        forwarder = Forwarder(url.hostname, url.port or 5432)
        proxied = stack.pg_url.replace(f"{url.hostname}:{url.port}", f"127.0.0.1:{forwarder.port}")
        stack.start_api(WARREN_PG_URL=proxied)
        status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 120})
        check(status == 201, f"create before the outage: {status} {body}")
        first = body["sandboxID"]

        forwarder.cut()
        cut_at = time.time()
        # The first request after the cut may still find a pooled connection
        # dead and fail over; within a few seconds every answer is 503.
        wait_for(lambda: stack.request("GET", "/sandboxes")[0] == 503, 15, "503 on GET /sandboxes")
        print(f"503 {time.time() - cut_at:.2f} s after the cut")
        status, body, _ = stack.request("GET", "/sandboxes")
        check(status == 503 and "database unavailable" in body["message"], f"list: {status} {body}")
        status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
        check(status == 503, f"create during the outage: {status} {body}")
        status, body, _ = stack.request("GET", f"/sandboxes/{first}")
        check(status == 503, f"GET during the outage: {status} {body}")
        status, body, _ = stack.request("GET", "/health", key="")
        check(status == 503, f"/health during the outage: {status} {body}")
        time.sleep(2)  # a real outage lasts; the pool keeps failing fast
        status, _, _ = stack.request("GET", "/sandboxes")
        check(status == 503, f"still 503 two seconds later: {status}")
        check(stack.processes["api"].poll() is None, "warren-api survived the outage")

        forwarder.restore()
        restored_at = time.time()
        wait_for(lambda: stack.request("GET", "/sandboxes")[0] == 200, 30, "GET /sandboxes 200 again")
        print(f"200 again {time.time() - restored_at:.2f} s after PostgreSQL came back")
        status, listed, _ = stack.request("GET", "/sandboxes")
        check(any(s["sandboxID"] == first for s in listed), "the sandbox of before is listed")
        check(stack.request("GET", "/health", key="")[0] == 200, "/health 200 again")
        status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
        check(status == 201, f"create after the outage: {status} {body}")
        rows = faults.rows(stack)
        check(not any(state == "starting" for state, _, _ in rows.values()), f"rows: {faults.state_counts(stack)}")
        stack.kill("api")
        stack.kill("worker")
        faults.check_nothing_left(stack)
        print(f"PostgreSQL outage: {faults.check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
