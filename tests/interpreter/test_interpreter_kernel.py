#!/usr/bin/env python3
"""Integration test of warren-interpreter against real ipykernel kernels on
127.0.0.1 (no sandbox): the HTTP calls @e2b/code-interpreter makes, read as
the NDJSON lines it parses. Skips (77) when Debian's python3 has no
ipykernel (apt install python3-ipykernel python3-matplotlib)."""
import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

PYTHON = "/usr/bin/python3"
STARTUP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "guest", "interpreter",
                       "ipython_startup.py")
TOKEN = "interp-test-token-0123456789"
FAILURES = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        FAILURES.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    """The server gets SIGTERM when this test dies (a ctest timeout kills
    the test, not its children); it then stops its kernels."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM


class Server:
    def __init__(self, binary, workdir):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        token_hash = "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()
        self.log = open(os.path.join(workdir, "interpreter.log"), "wb")
        self.process = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{self.port}", "--token-hash", token_hash,
             "--cwd", workdir, "--python", PYTHON, "--runtime-dir", workdir, "--startup", STARTUP],
            stdout=self.log, stderr=self.log, preexec_fn=die_with_parent)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("server did not listen")

    def request(self, method, path, body=None, token=TOKEN, timeout=120):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("X-Access-Token", token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def execute(self, code, **more):
        status, text = self.request("POST", "/execute", dict(code=code, **more))
        lines = [json.loads(line) for line in text.split("\n") if line] if status == 200 else []
        return status, lines, text

    def close(self):
        """Stops the server; its exit status (a sanitizer build reports
        leaks and errors through it)."""
        self.process.terminate()
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


def of_type(lines, kind):
    return [l for l in lines if l["type"] == kind]


def main():
    binary = sys.argv[1]
    probe = subprocess.run([PYTHON, "-c", "import ipykernel, matplotlib, numpy"], capture_output=True)
    if probe.returncode != 0:
        print(f"SKIP: {PYTHON} lacks ipykernel/matplotlib/numpy: {probe.stderr.decode().strip()[-200:]}")
        return 77
    workdir = tempfile.mkdtemp(prefix="warren-interp-test-")
    server = Server(binary, workdir)
    try:
        run(server)
    finally:
        status = server.close()
        check(status == 0, f"server exits 0 on SIGTERM (got {status})")
        if FAILURES:
            server.log.flush()
            sys.stdout.write(open(os.path.join(workdir, "interpreter.log")).read()[-4000:])
    print(f"{len(FAILURES)} failure(s)")
    if not FAILURES:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if FAILURES else 0


def run(server):
    # Immediately after start: the first call waits for the default kernel.
    status, lines, _ = server.execute("x = 6*7")
    check(status == 200 and lines[-1] == {"type": "end_of_execution"}, "first execute (queued for boot)")
    status, lines, _ = server.execute("x")
    results = of_type(lines, "result")
    check(len(results) == 1 and results[0]["text"] == "42" and results[0]["is_main_result"] is True,
          "state kept: x -> result text 42")
    counts = of_type(lines, "number_of_executions")
    check(len(counts) == 1 and counts[0]["execution_count"] == 2, "execution count 2")

    status, lines, _ = server.execute("print('one'); import sys; print('two', file=sys.stderr); print('three')")
    out = "".join(l["text"] for l in of_type(lines, "stdout"))
    err = "".join(l["text"] for l in of_type(lines, "stderr"))
    check(out == "one\nthree\n" and err == "two\n", f"stdout/stderr lines ({out!r}, {err!r})")
    # Flushed prints arrive as separate lines, in the order printed.
    status, lines, _ = server.execute("import sys\nfor i in range(3):\n    print(f'o{i}', flush=True)\n"
                                      "    print(f'e{i}', file=sys.stderr, flush=True)")
    order = [(l["type"], l["text"]) for l in lines if l["type"] in ("stdout", "stderr")]
    check(order == [(kind, f"{kind[3]}{i}\n") for i in range(3) for kind in ("stdout", "stderr")],
          f"stdout/stderr interleaved in order ({order})")

    status, lines, _ = server.execute("1/0")
    errors = of_type(lines, "error")
    check(len(errors) == 1 and errors[0]["name"] == "ZeroDivisionError"
          and errors[0]["value"] == "division by zero" and "ZeroDivisionError" in errors[0]["traceback"],
          "exception -> error name/value/traceback")

    status, lines, _ = server.execute(
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9], label='v')\nplt.title('T')\n"
        "plt.xlabel('time (s)')\nplt.show()")
    pngs = [l for l in of_type(lines, "result") if "png" in l]
    check(len(pngs) == 1 and base64.b64decode(pngs[0]["png"]).startswith(b"\x89PNG\r\n\x1a\n")
          and pngs[0]["is_main_result"] is False, "matplotlib plot -> PNG display result")
    chart = pngs[0].get("chart", {}) if pngs else {}
    check(chart.get("type") == "line" and chart.get("title") == "T" and chart.get("x_label") == "time (s)"
          and chart.get("x_unit") == "s" and chart.get("x_scale") == "linear"
          and chart.get("elements") == [{"label": "v", "points": [[1, 4], [2, 1], [3, 9]]}],
          f"matplotlib plot -> chart data next to the PNG ({json.dumps(chart)[:300]})")
    status, lines, _ = server.execute(
        "import matplotlib.pyplot as plt\nfig, axes = plt.subplots(1, 2)\n"
        "axes[0].bar(['a', 'b'], [3, 5])\naxes[1].pie([1, 3], labels=['p', 'q'])\nplt.show()")
    charts = [l.get("chart") for l in of_type(lines, "result") if "png" in l]
    chart = charts[0] if charts and charts[0] else {}
    check(chart.get("type") == "superchart"
          and [c["type"] for c in chart.get("elements", [])] == ["bar", "pie"]
          and chart["elements"][0]["elements"] == [{"label": "a", "value": "3", "group": "Series 0"},
                                                   {"label": "b", "value": "5", "group": "Series 0"}]
          and [e["label"] for e in chart["elements"][1]["elements"]] == ["p", "q"]
          and [round(e["angle"]) for e in chart["elements"][1]["elements"]] == [90, 270],
          f"bar + pie subplots -> superchart ({json.dumps(chart)[:300]})")
    status, lines, _ = server.execute("_warren_install_chart_formatter")
    check([e["name"] for e in of_type(lines, "error")] == ["NameError"], "the start-up file leaves no names")

    status, lines, _ = server.execute("import os; os.environ.get('WARREN_T')", env_vars={"WARREN_T": "v1"})
    check([l.get("text") for l in of_type(lines, "result")] == ["'v1'"], "env_vars visible in the cell")
    status, lines, _ = server.execute("import os; os.environ.get('WARREN_T')")
    check(of_type(lines, "result") == [], "env_vars restored after the cell")

    # Contexts: an independent namespace, listed, removed.
    status, text = server.request("POST", "/contexts", {"language": "python"}, token=None)
    context = json.loads(text) if status == 200 else {}
    check(status == 200 and context.get("language") == "python" and context.get("id"), "create context")
    status, lines, _ = server.execute("x", context_id=context.get("id"))
    check([e["name"] for e in of_type(lines, "error")] == ["NameError"], "new context: x undefined")
    status, text = server.request("GET", "/contexts", token=None)
    check(status == 200 and len(json.loads(text)) == 2, "list contexts: default + new")
    status, _ = server.request("POST", f"/contexts/{context.get('id')}/restart", token=None)
    check(status == 204, "restart context")
    status, _ = server.request("DELETE", f"/contexts/{context.get('id')}", token=None)
    check(status == 204, "remove context")
    status, _, text = server.execute("1", context_id=context.get("id"))
    check(status == 404, f"removed context -> 404 ({text.strip()})")

    # Bad input and auth.
    status, _, _ = server.execute("1", language="cobol")
    check(status == 400, "unsupported language -> 400")
    status, _, _ = server.execute("1", language="python", context_id="x")
    check(status == 400, "context and language -> 400")
    status, _ = server.request("POST", "/execute", {"code": "1"}, token=None)
    check(status == 401, "execute without token -> 401")
    status, _ = server.request("POST", "/execute", {"code": "1"}, token="wrong")
    check(status == 401, "execute with a wrong token -> 401")
    status, _ = server.request("GET", "/contexts", token="wrong")
    check(status == 401, "context call with a wrong token -> 401")

    # A client that gives up on an endless loop after 2 s in all (like the
    # SDK's timeoutMs): the kernel is interrupted and the context keeps its
    # state. Meanwhile the silent cell gets keepalive lines.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/execute", json.dumps({"code": "while True: pass"}),
                 {"Content-Type": "application/json", "X-Access-Token": TOKEN})
    response = conn.getresponse()
    deadline, seen = time.time() + 2.5, []
    while time.time() < deadline:
        line = response.readline()
        if not line:
            break
        seen.append(json.loads(line)["type"])
    conn.close()
    check("keepalive" in seen and "end_of_execution" not in seen, f"silent cell: keepalive lines ({seen})")
    started = time.time()
    status, lines, _ = server.execute("x + 1")
    check([l.get("text") for l in of_type(lines, "result")] == ["43"],
          f"after an interrupted loop the context still works ({time.time() - started:.1f} s)")

    # Big output is bounded: 100 MB printed, 16 MiB kept, then the marker;
    # the server keeps working.
    started = time.time()
    status, lines, _ = server.execute("for i in range(1000):\n    print('y' * 100000)")
    total = sum(len(l["text"]) for l in of_type(lines, "stdout"))
    markers = [l["text"] for l in of_type(lines, "stderr")]
    check(status == 200 and 15 * 1024 * 1024 < total <= 16 * 1024 * 1024
          and markers == ["\n[warren: output truncated, over 16 MiB]\n"]
          and lines[-1] == {"type": "end_of_execution"},
          f"100 MB of prints truncated with a marker ({total} bytes kept, {markers}, "
          f"{time.time() - started:.1f} s)")
    status, lines, _ = server.execute("'still here'")
    check([l.get("text") for l in of_type(lines, "result")] == ["'still here'"], "answers after 100 MB")

    # A kernel that dies: an error now, a fresh kernel next time.
    status, lines, _ = server.execute("import os; os._exit(3)")
    check([e["name"] for e in of_type(lines, "error")] == ["DeadKernelError"], "dead kernel -> error")
    status, lines, _ = server.execute("1 + 1")
    check([l.get("text") for l in of_type(lines, "result")] == ["2"], "restarted kernel answers")


if __name__ == "__main__":
    sys.exit(main())
