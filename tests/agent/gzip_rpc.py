#!/usr/bin/env python3
"""integration (labels: integration agent): gzip on the agent's wire
against a real warren-agent on 127.0.0.1 started with --gzip-limit 1 MiB:
POST /files with Content-Encoding: gzip (octet-stream and multipart,
concatenated members), a zip bomb (413, the agent still fine), corrupt
and truncated bodies (400), GET /files with Accept-Encoding: gzip (and
without, and with q=0), a unary Connect call with Content-Encoding: gzip
and a stream whose envelope is compressed (Connect-Content-Encoding).
Usage: gzip_rpc.py path/to/warren-agent"""
import gzip
import json
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from watcher_rpc import Agent  # noqa: E402

LIMIT = 1024 * 1024


def main():
    with tempfile.TemporaryDirectory() as work:
        agent = Agent(sys.argv[1], work, ["--gzip-limit", str(LIMIT)])
        try:
            run(agent, work)
        except BaseException:
            agent.log.seek(0)
            print("--- agent log\n" + agent.log.read())
            raise
        finally:
            agent.stop()
    print("gzip_rpc: all passed")


def upload(agent, path, body, content_type="application/octet-stream", encoding="gzip"):
    headers = {"X-Access-Token": agent.token, "Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    return agent.request("POST", f"/files?path={path}", body, headers)


def run(agent, work):
    data = os.urandom(100_000) + b"text " * 20_000
    target = os.path.join(work, "up.bin")
    status, reply = upload(agent, target, gzip.compress(data))
    assert status == 200, (status, reply)
    assert open(target, "rb").read() == data
    # two members, as `cat a.gz b.gz` makes
    status, _ = upload(agent, target, gzip.compress(b"one ") + gzip.compress(b"two"))
    assert status == 200 and open(target, "rb").read() == b"one two"
    # multipart inside gzip
    boundary = "warrenboundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{target}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode() \
        + b"from a form" + f"\r\n--{boundary}--\r\n".encode()
    status, reply = upload(agent, "", gzip.compress(form),
                           f"multipart/form-data; boundary={boundary}")
    assert status == 200 and open(target, "rb").read() == b"from a form", (status, reply)
    print("gzip uploads ok")

    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), 9)  # 64 MiB in ~64 KiB
    status, reply = upload(agent, os.path.join(work, "bomb"), bomb)
    assert status == 413, (status, reply)
    assert b"more than" in reply, reply
    assert os.path.getsize(os.path.join(work, "bomb")) <= LIMIT
    status, reply = upload(agent, target, b"not gzip at all")
    assert status == 400 and b"not valid gzip" in reply, (status, reply)
    status, reply = upload(agent, target, gzip.compress(b"cut short" * 1000)[:-12])
    assert status == 400 and b"truncated" in reply, (status, reply)
    status, reply = upload(agent, target, b"x", encoding="br")
    assert status == 415, (status, reply)
    assert agent.request("GET", "/health")[0] == 204
    print(f"gzip bomb {len(bomb)} -> 413, corrupt/truncated -> 400, br -> 415 ok")

    open(target, "wb").write(data)
    for accept, compressed in (("gzip", True), ("gzip, deflate", True), ("gzip;q=0", False),
                               (None, False), ("identity", False)):
        headers = {"X-Access-Token": agent.token}
        if accept:
            headers["Accept-Encoding"] = accept
        status, body = agent.request("GET", f"/files?path={target}", None, headers)
        assert status == 200
        if compressed:
            assert body[:2] == b"\x1f\x8b", accept
            body = gzip.decompress(body)
        assert body == data, accept
    print("gzip download negotiation ok")

    # Connect: a gzip unary request and a compressed stream envelope
    auth = {"X-Access-Token": agent.token, "Connect-Protocol-Version": "1"}
    status, body = agent.request(
        "POST", "/filesystem.Filesystem/Stat", gzip.compress(json.dumps({"path": target}).encode()),
        {**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 200 and int(json.loads(body)["entry"]["size"]) == len(data), (status, body)
    status, body = agent.request(
        "POST", "/filesystem.Filesystem/Stat", gzip.compress(b" " * (2 * 1024 * 1024)),
        {**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 429 and json.loads(body)["code"] == "resource_exhausted", (status, body)
    message = gzip.compress(json.dumps({"process": {"cmd": "echo", "args": ["zipped"]}}).encode())
    status, body = agent.request(
        "POST", "/process.Process/Start", struct.pack(">BI", 1, len(message)) + message,
        {**auth, "Content-Type": "application/connect+json", "Connect-Content-Encoding": "gzip"})
    assert status == 200 and b"emlwcGVkCg==" in body, (status, body)  # base64 "zipped\n"
    print("Connect gzip requests ok")


if __name__ == "__main__":
    main()
