"""e2e (labels e2e, lifecycle): pause / resume / connect / onTimeout pause of
jail sandboxes through the real warren-api, Kafka, warren-worker and
PostgreSQL with the npm e2b SDK as the client (sdk_pause.cjs), then the
REST edges (404s, /resume), the events on the results topic, and what a
worker restart does to a paused sandbox (it ends failed, nothing left)."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, Stack, check, check_count, free_port, wait_for  # noqa: E402

SDK_VERSION = os.environ.get("E2B_SDK_VERSION", "2.51.0")
SDK_DIR = os.path.join(os.environ.get("WARREN_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warren")), "npm-e2b", SDK_VERSION)


def state_of(stack, sandbox_id):
    return stack.psql(f"SELECT state FROM sandboxes WHERE id = '{sandbox_id}'")


def cgroup_dirs(stack, sandbox_id):
    parent = "warren-" + stack.tag
    return [d for d in (os.path.join("/sys/fs/cgroup", h, parent, sandbox_id)
                        for h in ("", "unified", "memory", "cpu", "pids")) if os.path.isdir(d)]


def freezer_available():
    return any(os.path.exists(os.path.join(root, "cgroup.freeze")) or
               os.path.exists(os.path.join(root, "cgroup.controllers"))
               for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"))


def test_sdk(stack):
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "sdk_pause.cjs")],
                         env=dict(os.environ, E2B_SDK_DIR=SDK_DIR, E2B_API_URL=stack.api_url,
                                  E2B_API_KEY=stack.api_key, E2B_DOMAIN="warren.test",
                                  WARREN_PG_URL=stack.pg_url, CGROUP_PARENT="warren-" + stack.tag),
                         capture_output=True, text=True, timeout=240)
    print(out.stdout.strip())
    check(out.returncode == 0, "SDK pause scenarios failed:\n" + out.stdout + out.stderr +
          "\n--- worker\n" + stack.log("worker")[-4000:])


def test_rest_edges(stack):
    status, body, _ = stack.request("POST", "/sandboxes/iaaaaaaaaaaaaaaaaaaaa/pause")
    check(status == 404, f"pause of an unknown sandbox -> {status} {body}")
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
    check(status == 201, f"create: {status} {body}")
    sandbox_id = body["sandboxID"]
    status, body, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/resume", {"timeout": 30})
    check(status == 409, f"resume of a running sandbox -> {status} {body}")
    started = time.time()
    status, _, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/pause")
    check(status == 204, f"pause -> {status}")
    print(f"figure: REST pause {(time.time() - started) * 1000:.0f} ms")
    address = stack.psql(f"SELECT host(slot_address) FROM sandboxes WHERE id = '{sandbox_id}'")
    started = time.time()
    status, body, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/resume", {"timeout": 30})
    resumed = time.time()
    check(status == 201 and body["sandboxID"] == sandbox_id, f"resume -> {status} {body}")
    with urllib.request.urlopen(f"http://{address}:49983/health", timeout=10) as resp:
        check(resp.status == 204, f"agent /health after resume: {resp.status}")
    print(f"figure: REST resume {(resumed - started) * 1000:.0f} ms, "
          f"agent /health answered {(time.time() - started) * 1000:.0f} ms after the request")
    check(state_of(stack, sandbox_id) == "running", "running after /resume")
    status, _, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/pause")
    check(status == 204, f"pause again -> {status}")
    wait_for(lambda: all(any(e["type"] == t and e["sandbox_id"] == sandbox_id for e in stack.events())
                         for t in ("paused", "resumed")), 10, "paused and resumed events")
    host_commands = [e["type"] for e in stack.events(f"warren.host.{stack.host_id}.commands")
                     if e["sandbox_id"] == sandbox_id]
    check("pause" in host_commands and "resume" in host_commands,
          f"pause/resume went over the host topic: {host_commands}")
    history = stack.psql(f"SELECT string_agg(payload->>'to', ',' ORDER BY id) FROM sandbox_events "
                         f"WHERE sandbox_id = '{sandbox_id}'")
    check("pausing,paused,resuming,running,pausing,paused" in history, f"state history: {history}")
    return sandbox_id


def produce_command(stack, kind, sandbox_id, spec=None):
    """A command straight to the host topic (as a redelivery would bring it)."""
    request_id = str(uuid.uuid4())
    event = {"version": 1, "type": kind, "request_id": request_id, "team_id": stack.team_id,
             "sandbox_id": sandbox_id, "spec": spec or {},
             "sent_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
    subprocess.run(["kcat", "-b", stack.brokers, "-P", "-t",
                    f"{stack.prefix}warren.host.{stack.host_id}.commands", "-k", sandbox_id],
                   input=json.dumps(event), text=True, check=True, timeout=30)
    return request_id


def result_of(stack, request_id):
    return wait_for(lambda: next((e for e in stack.events() if e["request_id"] == request_id), None),
                    20, f"the result of {request_id}")


def test_redelivery(stack, sandbox_id):
    """Commands produced again (Kafka redelivery, a retrying producer) are
    idempotent: the state does not move twice and the result repeats."""
    check(state_of(stack, sandbox_id) == "paused", "paused before the redelivery")
    result = result_of(stack, produce_command(stack, "pause", sandbox_id))
    check(result["type"] == "paused" and state_of(stack, sandbox_id) == "paused",
          f"a second pause command: {result}")
    first = result_of(stack, produce_command(stack, "resume", sandbox_id, {"timeout_s": 60}))
    second = result_of(stack, produce_command(stack, "resume", sandbox_id, {"timeout_s": 60}))
    check(first["type"] == "resumed" and second["type"] == "resumed", f"resumes: {first} {second}")
    check(state_of(stack, sandbox_id) == "running", "running after two resumes")
    history = stack.psql(f"SELECT count(*) FROM sandbox_events WHERE sandbox_id = '{sandbox_id}' "
                         f"AND payload->>'to' = 'resuming'")
    check(history == "2", f"one resuming per real resume (2 in this test): {history}")
    # A pause produced straight to Kafka (no API compare-and-set first).
    result = result_of(stack, produce_command(stack, "pause", sandbox_id))
    check(result["type"] == "paused" and state_of(stack, sandbox_id) == "paused",
          f"a pause produced straight to Kafka: {result}")
    print("redelivered pause/resume commands: idempotent")


def through_proxy(port, sandbox_id, path="/health"):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers={"Host": f"49983-{sandbox_id}.warren.test"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def test_auto_resume(stack):
    """autoResume: traffic through warren-proxy wakes a sandbox its timeout
    paused; without autoResume the proxy answers 502 and it stays paused."""
    if not os.path.exists(os.path.join(BIN, "warren-proxy")):
        print("SKIP autoResume part: warren-proxy is not built")
        return
    port = free_port()
    stack.spawn("proxy", "warren-proxy", WARREN_PROXY_LISTEN=f"127.0.0.1:{port}")
    wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 30, "warren-proxy to listen")
    ids = {}
    for name, auto_resume in (("woken", True), ("asleep", False)):
        status, body, _ = stack.request("POST", "/sandboxes", {
            "templateID": "minimal", "timeout": 2, "autoPause": True,
            "autoResume": {"enabled": auto_resume}})
        check(status == 201, f"create ({name}): {status} {body}")
        ids[name] = body["sandboxID"]
    for name, sandbox_id in ids.items():
        wait_for(lambda: state_of(stack, sandbox_id) == "paused", 20, f"{name} to pause at its timeout")
    started = time.time()
    status = through_proxy(port, ids["woken"])
    check(status == 204, f"agent /health through the proxy woke it: {status}\n" + stack.log("proxy")[-2000:])
    check(state_of(stack, ids["woken"]) == "running", "running after the request")
    print(f"figure: autoResume: first request through warren-proxy answered in "
          f"{(time.time() - started) * 1000:.0f} ms")
    status = through_proxy(port, ids["asleep"])
    check(status == 502, f"no autoResume: the proxy answers {status}")
    check(state_of(stack, ids["asleep"]) == "paused", "still paused")
    for sandbox_id in ids.values():
        stack.request("DELETE", f"/sandboxes/{sandbox_id}")
    stack.kill("proxy")
    print("autoResume through warren-proxy ok")


def test_worker_restart(stack, paused_id):
    """A paused jail sandbox does not survive a worker restart: reconcile
    stops it and ends its row as failed (documented in workers/README.md)."""
    check(state_of(stack, paused_id) == "paused", "paused before the restart")
    # A worker killed in the middle of a pause: the API moved the row to
    # pausing and the command was never handled (it is not produced here).
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
    check(status == 201, f"create: {status} {body}")
    pausing_id = body["sandboxID"]
    stack.psql(f"UPDATE sandboxes SET state = 'pausing' WHERE id = '{pausing_id}'")
    stack.kill("worker", signal.SIGKILL)
    stack.start_worker()
    wait_for(lambda: state_of(stack, paused_id) == "failed", 30, "the paused row to end")
    reason = stack.psql(f"SELECT failure_reason FROM sandboxes WHERE id = '{paused_id}'")
    check("paused" in reason, f"failure reason names it: {reason}")
    wait_for(lambda: state_of(stack, pausing_id) == "failed", 30, "the pausing row to end")
    for sandbox_id in (paused_id, pausing_id):
        wait_for(lambda: not cgroup_dirs(stack, sandbox_id), 30, "its cgroups to go")
        check(not os.path.exists(os.path.join(stack.state_dir, sandbox_id)), "state dir removed")
    status, _, _ = stack.request("POST", f"/v2/sandboxes/{paused_id}/connect", {"timeout": 30})
    check(status == 404, f"connect of the lost paused sandbox -> {status}")
    print("worker restart: the paused and the pausing sandbox ended failed, nothing left")


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups)")
        return 1
    if not freezer_available():
        print("SKIP: no cgroup v2 tree on this host (the jail freezer needs one)")
        return 77
    if not os.path.isdir(os.path.join(SDK_DIR, "node_modules", "e2b")):
        print(f"SKIP: the npm e2b SDK is not installed in {SDK_DIR} (scripts/setup installs it)")
        return 77
    with Stack("pause") as stack:
        stack.start()
        test_sdk(stack)
        paused_id = test_rest_edges(stack)
        test_redelivery(stack, paused_id)
        test_auto_resume(stack)
        test_worker_restart(stack, paused_id)
    print(f"e2e pause: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
