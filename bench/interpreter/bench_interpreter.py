#!/usr/bin/python3
"""bench_interpreter: runCode('1+1') round trips through warren-interpreter
(POST /execute on 127.0.0.1, one kept-alive connection, the NDJSON read to
its end) against the same code through jupyter_client's own blocking
client (execute_interactive) on its own kernel, same run, same machine.
Also the first call after the server starts (what a runCode right after
Sandbox.create pays). Run with Debian's python3 (jupyter_client, ipykernel).

  bench/interpreter/bench_interpreter.py BUILD/bin/warren-interpreter [N]
"""
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ours(binary, n):
    port = free_port()
    work = tempfile.mkdtemp(prefix="warren-bench-interp-")
    started = time.perf_counter()
    startup = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "guest", "interpreter",
                           "ipython_startup.py")  # as in the template
    server = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}", "--cwd", work,
                               "--python", sys.executable, "--runtime-dir", work, "--startup", startup],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                conn.connect()
                break
            except OSError:
                time.sleep(0.005)

        def run(code):
            conn.request("POST", "/execute", json.dumps({"code": code}),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            lines = [json.loads(l) for l in resp.read().decode().splitlines() if l]
            assert resp.status == 200 and any(l.get("text") == "2" for l in lines), lines
        run("1+1")
        first = time.perf_counter() - started
        for _ in range(20):
            run("1+1")
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            run("1+1")
            samples.append(time.perf_counter() - t)
        return first, samples
    finally:
        server.terminate()
        server.wait()


def peer(n):
    from jupyter_client.manager import start_new_kernel
    started = time.perf_counter()
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        def run(code):
            got = []
            reply = kc.execute_interactive(code, timeout=60, output_hook=got.append)
            assert reply["content"]["status"] == "ok"
        run("1+1")
        first = time.perf_counter() - started
        for _ in range(20):
            run("1+1")
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            run("1+1")
            samples.append(time.perf_counter() - t)
        return first, samples
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    first, samples = ours(binary, n)
    ms = lambda v: f"{v * 1000:.2f} ms"
    print(f"warren-interpreter: first runCode after server start {ms(first)} (includes the kernel start)")
    print(f"warren-interpreter: runCode('1+1') warm, n={n}: p50 {ms(statistics.median(samples))}, "
          f"p99 {ms(percentile(samples, 0.99))}")
    try:
        peer_first, peer_samples = peer(n)
    except ImportError as err:
        print(f"peer skipped: {err}")
        return 0
    print(f"jupyter_client {__import__('jupyter_client').__version__} execute_interactive('1+1'), n={n}: "
          f"p50 {ms(statistics.median(peer_samples))}, p99 {ms(percentile(peer_samples, 0.99))}")
    print(f"jupyter_client: first execute after start_new_kernel {ms(peer_first)} (includes the kernel start)")
    print(f"ratio ours/peer: p50 {statistics.median(samples) / statistics.median(peer_samples):.2f}, "
          f"p99 {percentile(samples, 0.99) / percentile(peer_samples, 0.99):.2f}, "
          f"first call {first / peer_first:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
