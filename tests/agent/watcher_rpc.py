#!/usr/bin/env python3
"""integration (labels: integration agent): the unary watcher RPCs
(CreateWatcher / GetWatcherEvents / RemoveWatcher) against a real
warren-agent on 127.0.0.1, sent as the Python e2b SDK's sync watch_dir
sends them: connect-python's JSON codec (protobuf MessageToJson: indented,
camelCase), Content-Encoding identity, Connect-Protocol-Version 1, Basic
user header. Usage: watcher_rpc.py path/to/warren-agent"""
import base64
import hashlib
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    def __init__(self, binary, work, extra_args=()):
        self.token = secrets.token_hex(32)
        digest = hashlib.sha256(self.token.encode()).hexdigest()
        self.port = free_port()
        self.log = open(os.path.join(work, "agent.log"), "w+")
        self.proc = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{self.port}", "--token-hash", f"sha256:{digest}",
             *extra_args],
            stderr=self.log)
        for _ in range(200):
            try:
                if self.request("GET", "/health")[0] == 204:
                    break
            except OSError:
                time.sleep(0.05)
        status, _ = self.request("POST", "/init", json.dumps(
            {"accessToken": self.token, "defaultUser": "root"}).encode(),
            {"Content-Type": "application/json"})
        assert status == 204, status

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, data

    def rpc(self, method, message):
        """A unary call as connect-python makes it (json=True, no compressor)."""
        body = json.dumps(message, indent=2).encode()
        status, data = self.request("POST", f"/filesystem.Filesystem/{method}", body, {
            "user-agent": "connect-python",
            "connect-protocol-version": "1",
            "content-encoding": "identity",
            "content-type": "application/json",
            "X-Access-Token": self.token,
            "Authorization": "Basic " + base64.b64encode(b"root:").decode(),
        })
        return status, json.loads(data) if data else None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def events_until(agent, watcher_id, wanted, timeout=10):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, result = agent.rpc("GetWatcherEvents", {"watcherId": watcher_id})
        assert status == 200, (status, result)
        seen += [(e["type"], e["name"]) for e in result.get("events", [])]
        if all(w in seen for w in wanted):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"missing {set(wanted) - set(seen)} in {seen}")


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as work:
        agent = Agent(binary, work)
        try:
            run(agent, work)
        except BaseException:
            agent.log.seek(0)
            print("--- agent log\n" + agent.log.read())
            raise
        finally:
            agent.stop()
    print("watcher_rpc: all passed")


def run(agent, work):
    watched = os.path.join(work, "watched")
    os.makedirs(watched)
    status, created = agent.rpc("CreateWatcher", {"path": watched, "recursive": True})
    assert status == 200 and created["watcherId"], (status, created)
    wid = created["watcherId"]

    # create / modify / remove, and a file in a directory made after the watch
    with open(os.path.join(watched, "a.txt"), "w") as f:
        f.write("one")
    with open(os.path.join(watched, "a.txt"), "a") as f:
        f.write("two")
    os.makedirs(os.path.join(watched, "sub"))
    with open(os.path.join(watched, "sub", "b.txt"), "w") as f:
        f.write("b")
    os.remove(os.path.join(watched, "a.txt"))
    seen = events_until(agent, wid, [
        ("EVENT_TYPE_CREATE", "a.txt"), ("EVENT_TYPE_WRITE", "a.txt"),
        ("EVENT_TYPE_REMOVE", "a.txt"), ("EVENT_TYPE_CREATE", "sub"),
        ("EVENT_TYPE_CREATE", "sub/b.txt")])
    print("events:", seen[:8], "...")
    # fetched events are gone from the queue
    status, result = agent.rpc("GetWatcherEvents", {"watcherId": wid})
    assert status == 200 and not result.get("events"), result

    # the queue is bounded: more events than it holds, fetched in one call
    for i in range(5000):
        open(os.path.join(watched, f"f{i}"), "w").close()
    time.sleep(0.5)
    status, result = agent.rpc("GetWatcherEvents", {"watcherId": wid})
    count = len(result.get("events", []))
    assert status == 200 and 1000 <= count <= 4096 + 4096, count
    print(f"5000 creates -> {count} events in one fetch (queue bound 4096)")

    status, _ = agent.rpc("RemoveWatcher", {"watcherId": wid})
    assert status == 200
    status, err = agent.rpc("GetWatcherEvents", {"watcherId": wid})
    assert status == 404 and err["code"] == "not_found", (status, err)
    status, err = agent.rpc("RemoveWatcher", {"watcherId": wid})
    assert status == 404, status
    status, err = agent.rpc("GetWatcherEvents", {"watcherId": 7})
    assert status == 400 and err["code"] == "invalid_argument", (status, err)
    status, err = agent.rpc("CreateWatcher", {"path": os.path.join(work, "absent")})
    assert status == 404 and err["code"] == "not_found", (status, err)

    # at most 64 watchers; removing one makes room again
    ids = []
    for _ in range(64):
        status, created = agent.rpc("CreateWatcher", {"path": watched})
        assert status == 200, (status, created)
        ids.append(created["watcherId"])
    status, err = agent.rpc("CreateWatcher", {"path": watched})
    assert err["code"] == "resource_exhausted", (status, err)
    assert agent.rpc("RemoveWatcher", {"watcherId": ids.pop()})[0] == 200
    assert agent.rpc("CreateWatcher", {"path": watched})[0] == 200
    # the agent's inotify descriptors are released on remove
    for wid in ids:
        assert agent.rpc("RemoveWatcher", {"watcherId": wid})[0] == 200
    inotify = []
    for fd in os.listdir(f"/proc/{agent.proc.pid}/fd"):
        try:  # connection sockets come and go meanwhile
            if os.readlink(f"/proc/{agent.proc.pid}/fd/{fd}") == "anon_inode:inotify":
                inotify.append(fd)
        except FileNotFoundError:
            pass
    assert len(inotify) == 1, inotify  # the one watcher still registered
    print("watcher limit and removal ok")


if __name__ == "__main__":
    main()
