#!/usr/bin/env python3
# Measures exec -> first GET /health 204 of warren-agent (20 runs):
#   python3 tests/agent/measure_health.py build/bin/warren-agent
import subprocess, time, socket, sys, statistics
agent = sys.argv[1]; res = []
for i in range(20):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    t0 = time.perf_counter()
    p = subprocess.Popen([agent, "--listen", f"127.0.0.1:{port}", "--token-hash", "sha256:" + "0"*64], stderr=subprocess.DEVNULL)
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if c.recv(64).startswith(b"HTTP/1.1 204"):
                c.close(); break
            c.close()
        except OSError:
            time.sleep(0.0002)
    res.append((time.perf_counter() - t0) * 1000)
    p.terminate(); p.wait()
print(f"exec -> /health 204: median {statistics.median(res):.2f} ms, min {min(res):.2f}, max {max(res):.2f} (n={len(res)})")
