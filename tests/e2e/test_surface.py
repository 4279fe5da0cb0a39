"""e2e (labels e2e, api): the E2B surface beyond create/kill with the npm e2b
SDK as the client against the real warren-api, Kafka, warren-worker (jail
runtime, real slots) and PostgreSQL: getMetrics of a sandbox running a CPU
loop (the worker's cgroup and disk samples), list filters, a clear 501 for a
call warren does not implement, and updateNetwork({allowInternetAccess})
cutting egress.

The egress target is a test server on a documentation address
(198.51.100.77) inside a namespace this test creates, reached from the host
through one veth and a /32 route: nothing leaves the machine."""
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, check, check_count, free_port  # noqa: E402

SDK_VERSION = os.environ.get("E2B_SDK_VERSION", "2.51.0")
SDK_DIR = os.path.join(os.environ.get("WARREN_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warren")), "npm-e2b", SDK_VERSION)
TARGET = "198.51.100.77"
PORT = 18080


def ip(*args, check_rc=True):
    return subprocess.run(["ip", *args], check=check_rc, capture_output=True, text=True)


class TestServer:
    """A namespace surfi<pid> holding a TCP server on TARGET:PORT, linked to
    the host by veth surfh<pid> with a /32 route to TARGET only."""

    def __init__(self):
        pid = os.getpid() % 100000
        self.ns, self.host_link, self.peer = f"surfi{pid}", f"surfh{pid}", f"surfp{pid}"
        self.server = None

    def __enter__(self):
        try:
            ip("netns", "add", self.ns)
            ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.peer, "netns", self.ns)
            ip("addr", "add", "198.51.100.1/32", "dev", self.host_link)
            ip("link", "set", self.host_link, "up")
            ip("route", "add", f"{TARGET}/32", "dev", self.host_link)
            ip("-n", self.ns, "link", "set", "lo", "up")
            ip("-n", self.ns, "addr", "add", f"{TARGET}/32", "dev", self.peer)
            ip("-n", self.ns, "link", "set", self.peer, "up")
            ip("-n", self.ns, "route", "add", "198.51.100.1/32", "dev", self.peer)
            ip("-n", self.ns, "route", "add", "default", "via", "198.51.100.1", "dev", self.peer, "onlink")
            self.server = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "python3", "-c",
                 "import socket\n"
                 f"s = socket.create_server(('{TARGET}', {PORT}))\n"
                 "while True:\n"
                 "    c, _ = s.accept(); c.close()\n"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.time() + 20
            while True:  # from the host, through the veth: the server is up
                try:
                    socket.create_connection((TARGET, PORT), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.2)
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.server:
            self.server.kill()
            self.server.wait()
        ip("route", "del", f"{TARGET}/32", check_rc=False)
        ip("link", "del", self.host_link, check_rc=False)
        ip("netns", "del", self.ns, check_rc=False)


def test_sdk_surface(stack):
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "sdk_surface.cjs")],
                         env=dict(os.environ, E2B_SDK_DIR=SDK_DIR, E2B_API_URL=stack.api_url,
                                  E2B_API_KEY=stack.api_key, E2B_DOMAIN="warren.test",
                                  WARREN_PG_URL=stack.pg_url, EGRESS_TARGET=f"{TARGET}:{PORT}"),
                         capture_output=True, text=True, timeout=240)
    print(out.stdout)
    check(out.returncode == 0, "SDK surface test failed:\n" + out.stdout + out.stderr)
    rows = int(stack.psql("SELECT count(*) FROM sandbox_metrics"))
    check(rows >= 2, f"sandbox_metrics rows: {rows}")
    # Logs of the (now killed) base sandbox: its lifecycle and the agent's console.
    base = stack.psql("SELECT id FROM sandboxes WHERE template_id = 'base'")
    status, body, _ = stack.request("GET", f"/v2/sandboxes/{base}/logs")
    check(status == 200, f"v2 logs: {status} {body}")
    messages = [(e["fields"]["source"], e["message"]) for e in body["logs"]]
    check(("lifecycle", "sandbox starting -> running") in messages, f"lifecycle lines: {messages[:5]}")
    check(any(m[1].endswith("-> killed") for m in messages), f"killed line: {messages[-3:]}")
    check(any(src == "console" and "listening on" in m for src, m in messages),
          f"the agent's console lines: {messages[:8]}")
    status, body, _ = stack.request("GET", f"/sandboxes/{base}/logs?limit=2")
    check(status == 200 and len(body["logs"]) == 2 and "line" in body["logs"][0], f"v1 logs: {body}")
    print(f"logs of {base}: {len(messages)} lines, e.g. {messages[:3]}")
    status, body, _ = stack.request("GET", "/volumes")
    check(status == 200 and isinstance(body, list), f"/volumes: {status} {body}")
    status, body, _ = stack.request("GET", "/volumecontent/vol_x/dir")
    check(status == 501 and body["code"] == 501 and "volume content" in body["message"],
          f"/volumecontent: {status} {body}")
    status, body, _ = stack.request("GET", "/no/such/route")
    check(status == 404, f"unknown route: {status}")


def test_prometheus(ports):
    """GET /metrics of warren-api and warren-worker, parsed by the official
    Prometheus Python client's parser (Debian's python3-prometheus-client)."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        # A python3 other than Debian's (pyenv, venv) does not see Debian's
        # package; the parser is pure Python.
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            print("SKIP (prometheus part): python3-prometheus-client is not installed")
            return
    for name, port, wanted in (("api", ports["api"], ("warren_api_requests_total", "warren_sandboxes",
                                                      "warren_api_request_duration_seconds",
                                                      "warren_api_results_total")),
                               ("worker", ports["worker"], ("warren_worker_commands_total", "warren_worker_slots",
                                                            "warren_worker_metric_samples_total"))):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            check(resp.headers["Content-Type"].startswith("text/plain; version=0.0.4"), f"{name} content type")
            text = resp.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        for metric in wanted:
            base = metric[:-len("_total")] if metric.endswith("_total") else metric
            check(base in families, f"{name} /metrics has {metric}: {sorted(families)}")
        if name == "api":
            creates = [s for s in families["warren_api_requests"].samples
                       if s.labels.get("endpoint") == "create" and s.labels.get("code") == "201"]
            check(creates and creates[0].value >= 2, f"api counted the creates: {creates}")
            buckets = [s for s in families["warren_api_request_duration_seconds"].samples
                       if s.name.endswith("_bucket")]
            check(len(buckets) > 10, "api latency histogram buckets")
            # Each create's outcome came one way or the other (which one
            # first is a race; test_api_integration's
            # test_create_answered_by_notification checks the notification
            # alone answers).
            results = {s.labels.get("via"): s.value for s in families["warren_api_results"].samples}
            check(results.get("notification", 0) + results.get("event", 0) >= 2,
                  f"api results by way: {results}")
        else:
            done = [s for s in families["warren_worker_commands"].samples
                    if s.labels.get("type") == "create" and s.labels.get("result") == "done"]
            check(done and done[0].value >= 2, f"worker counted the creates: {done}")
        print(f"{name} /metrics: {len(families)} families parsed")


ENVD_PATHS = {"/envs", "/files", "/files/compose", "/health", "/metrics"}  # the agent's, not the API's


def sdk_routes():
    """(method, path) of every REST route the installed SDK knows: the
    OpenAPI paths of its index.d.ts (the API's block, not the agent's) and
    the volume content calls of its code."""
    dist = os.path.join(SDK_DIR, "node_modules", "e2b", "dist")
    routes, current = set(), None
    with open(os.path.join(dist, "index.d.ts")) as f:
        for line in f:
            m = re.match(r'^  "(/[^"]*)": \{', line)
            if m:
                current = m.group(1) if m.group(1) not in ENVD_PATHS else None
                continue
            m = re.match(r"^    (get|put|post|delete|patch): \{", line)
            if m and current:
                routes.add((m.group(1).upper(), current))
    with open(os.path.join(dist, "index.js")) as f:
        for method, path in re.findall(r'\.(GET|POST|PUT|PATCH|DELETE)\("(/volumecontent/[^"]+)"', f.read()):
            routes.add((method, path))
    return sorted(routes)


def test_route_table(stack):
    """Every SDK route either works (any answer but "no such endpoint") or
    answers 501 with an E2B error body naming what is missing. Ids are
    made up, so nothing is changed."""
    fake = "iaaaaaaaaaaaaaaaaaaaa"
    routes = sdk_routes()
    check(len(routes) > 30, f"SDK routes found: {len(routes)}")
    unimplemented = []
    for method, path in routes:
        concrete = re.sub(r"\{sandboxID\}", fake, path)
        concrete = re.sub(r"\{[A-Za-z]+\}", "x1", concrete)
        status, body, _ = stack.request(method, concrete, None if method in ("GET", "DELETE") else {})
        message = body.get("message", "") if isinstance(body, dict) else ""
        check(status not in (404, 405) or not message.startswith(("no such endpoint", "method not allowed")),
              f"{method} {path}: {status} {body}")
        if status == 501:
            check(body.get("code") == 501 and "not implemented by warren" in message, f"{method} {path}: {body}")
            unimplemented.append(f"{method} {path}")
    print(f"route table: {len(routes)} SDK routes, {len(unimplemented)} answer 501")


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups)")
        return 1
    if not os.path.isdir(SDK_DIR):
        print(f"SKIP: the npm e2b SDK is not installed in {SDK_DIR} (scripts/setup installs it)")
        return 77
    with TestServer(), Stack("surf", with_base=True,
                             extra_env={"WARREN_METRICS_INTERVAL_MS": "1000"}) as stack:
        ports = {"api": free_port(), "worker": free_port()}
        stack.start(api=False, worker=False)
        stack.spawn("worker", "warren-worker", WARREN_METRICS_LISTEN=f"127.0.0.1:{ports['worker']}")
        stack.wait_log("worker", "ready:", 60)
        stack.start_api(WARREN_METRICS_LISTEN=f"127.0.0.1:{ports['api']}")
        test_sdk_surface(stack)
        test_prometheus(ports)
        test_route_table(stack)
    print(f"e2e surface: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
