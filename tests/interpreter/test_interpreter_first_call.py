#!/usr/bin/env python3
"""The first runCode after the server starts, several times over: each
round starts warren-interpreter, connects the moment the port listens
(while the default kernel is being forked and started) and sends /execute
on that connection, and a second one: with `Connection: close` (as
warren-proxy sends upstream: the answer then ends when the connection
closes, so a kernel that inherited the connection would keep it open for
ever) and keep-alive (chunked). Every answer must end, with the result,
within the deadline. Usage: test_interpreter_first_call.py BINARY
[ROUNDS]. Skips (77) without ipykernel."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

PYTHON = "/usr/bin/python3"
DEADLINE_S = 60  # per answer: a kernel start on a loaded 2-core machine included


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_when_listening(port, timeout):
    end = time.time() + timeout
    while time.time() < end:
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
            return s
        except OSError:
            s.close()
            time.sleep(0.001)
    raise AssertionError("server did not listen")


def request_bytes(code, close):
    body = json.dumps({"code": code}).encode()
    return (b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + (b"Connection: close\r\n" if close else b"")
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def read_answer(sock, close):
    """The whole answer: until the connection closes (close) or the last
    chunk (keep-alive); None when the deadline passes first."""
    sock.settimeout(1)
    data, end = b"", time.time() + DEADLINE_S
    while time.time() < end:
        try:
            piece = sock.recv(65536)
        except socket.timeout:
            continue
        if not piece:
            return data
        data += piece
        if not close and data.endswith(b"\r\n0\r\n\r\n"):
            return data
    return None


def one_round(binary, workdir, index):
    port = free_port()
    log = open(os.path.join(workdir, f"server-{index}.log"), "wb")
    server = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}", "--cwd", workdir,
                               "--python", PYTHON, "--runtime-dir", workdir],
                              stdout=log, stderr=log)
    try:
        first = connect_when_listening(port, 10)
        first.sendall(request_bytes("print(1+1); 6*7", close=True))
        second = socket.create_connection(("127.0.0.1", port))
        second.sendall(request_bytes("7*6", close=False))
        started = time.time()
        answers = [read_answer(first, True), read_answer(second, False)]
        first.close()
        second.close()
        ok = all(a is not None and b'"text":"42"' in a and b"end_of_execution" in a for a in answers)
        print(f"round {index}: {'ok' if ok else 'FAIL'} in {time.time() - started:.2f} s"
              + ("" if ok else f" answers {[a[-300:] if a else a for a in answers]}"), flush=True)
        return ok
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def main():
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    probe = subprocess.run([PYTHON, "-c", "import ipykernel"], capture_output=True)
    if probe.returncode != 0:
        print(f"SKIP: {PYTHON} lacks ipykernel")
        return 77
    workdir = tempfile.mkdtemp(prefix="warren-interp-first-")
    passed = sum(one_round(binary, workdir, i) for i in range(rounds))
    print(f"{passed}/{rounds} first calls answered in full")
    if passed == rounds:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print("server logs kept in", workdir)
    return 0 if passed == rounds else 1


if __name__ == "__main__":
    sys.exit(main())
