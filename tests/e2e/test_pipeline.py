"""e2e (labels e2e, pipeline): create -> run a command -> timeout/kill through
the real warren-api, Kafka, warren-worker (jail runtime, real slots) and
PostgreSQL, checking the rows and the events on both topics, then the same
with the npm e2b SDK as the client."""
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, SOURCE, check, check_count, wait_for  # noqa: E402

SDK_VERSION = os.environ.get("E2B_SDK_VERSION", "2.51.0")
SDK_DIR = os.path.join(os.environ.get("WARREN_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warren")), "npm-e2b", SDK_VERSION)

def sandbox_row(stack, sandbox_id):
    row = stack.psql(f"SELECT state, host_id, coalesce(host(slot_address), ''), "
                     f"coalesce(failure_reason, '') FROM sandboxes WHERE id = '{sandbox_id}'")
    return row.split("|") if row else None


def run_in_sandbox(stack, sandbox_id, token, version, address, command):
    out = subprocess.run(
        ["node", os.path.join(os.path.dirname(__file__), "sdk_command.cjs")],
        env=dict(os.environ, E2B_SDK_DIR=SDK_DIR, SANDBOX_ID=sandbox_id, ACCESS_TOKEN=token,
                 ENVD_VERSION=version, SANDBOX_URL=f"http://{address}:49983", COMMAND=command),
        capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError("running a command failed:\n" + out.stdout + out.stderr)
    return out.stdout


def test_api_pipeline(stack):
    started = time.time()
    status, body, headers = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 120, "secure": True,
                                                                 "metadata": {"suite": "e2e"},
                                                                 "envVars": {"GREETING": "hello"}})
    create_ms = (time.time() - started) * 1000
    check(status == 201, f"create answered {status}: {body}\n" + stack.log("worker")[-3000:])
    sandbox_id = body["sandboxID"]
    print(f"create -> 201 in {create_ms:.0f} ms: {sandbox_id}")
    expected_token = hmac.new(stack.seed.encode(), sandbox_id.encode(), hashlib.sha256).hexdigest()
    check(body["envdAccessToken"] == expected_token, "envdAccessToken is HMAC(seed, id)")
    check(body.get("trafficAccessToken") is None, "no traffic token with public traffic")
    check(body["templateID"] == "minimal", "templateID echoed")
    check(body.get("domain") == "warren.test", f"domain: {body.get('domain')}")
    check(bool(body.get("envdVersion")), "envdVersion present")
    check("X-Request-Id" in headers or "x-request-id" in {k.lower() for k in headers}, "X-Request-Id header")

    state, host, address, _ = sandbox_row(stack, sandbox_id)
    check(state == "running" and host == stack.host_id and address, f"row: {state} {host} {address}")
    transitions = stack.psql(f"SELECT count(*) FROM sandbox_events WHERE sandbox_id = '{sandbox_id}'")
    check(int(transitions) >= 2, f"sandbox_events rows: {transitions}")
    request_status = stack.psql(f"SELECT status FROM requests WHERE sandbox_id = '{sandbox_id}' AND type = 'create'")
    check(request_status == "done", f"requests row: {request_status}")

    commands = [e for e in stack.events("warren.sandbox.commands") if e["sandbox_id"] == sandbox_id]
    results = [e for e in stack.events() if e["sandbox_id"] == sandbox_id]
    check(len(commands) == 1 and commands[0]["type"] == "create", f"commands: {commands}")
    check(any(r["type"] == "created" and r["request_id"] == commands[0]["request_id"] for r in results),
          f"created result with the command's request_id: {results}")

    output = run_in_sandbox(stack, sandbox_id, body["envdAccessToken"], body["envdVersion"], address,
                            "echo $GREETING from $(hostname)")
    check(f"hello from {sandbox_id}" in output, f"command output: {output!r}")
    print("command ran in the sandbox:", output.strip())

    status, got, _ = stack.request("GET", f"/sandboxes/{sandbox_id}")
    check(status == 200 and got["sandboxID"] == sandbox_id, f"GET: {status} {got}")
    status, listed, _ = stack.request("GET", "/sandboxes")
    check(status == 200 and any(s["sandboxID"] == sandbox_id for s in listed), f"list: {status}")
    status, listed, headers = stack.request("GET", "/v2/sandboxes?state=running&limit=10")
    check(status == 200 and any(s["sandboxID"] == sandbox_id for s in listed), f"v2 list: {status}")

    status, body401, _ = stack.request("GET", f"/sandboxes/{sandbox_id}", key="e2b_" + "0" * 40)
    check(status == 401, f"wrong key -> {status}")

    # timeout: end_at moves to now + 2 s; the worker ends it within 1 s of that.
    status, _, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/timeout", {"timeout": 2})
    check(status == 204, f"timeout -> {status}")
    moved = time.time()
    wait_for(lambda: sandbox_row(stack, sandbox_id)[0] == "timed_out", 10, "timed_out")
    late = time.time() - moved - 2
    check(late < 1.5, f"timed out {late:.2f} s after end_at")
    print(f"timed out {max(late, 0) * 1000:.0f} ms after end_at")
    wait_for(lambda: any(e["type"] == "timed_out" and e["sandbox_id"] == sandbox_id for e in stack.events()),
             10, "timed_out event")
    check(not os.path.exists(os.path.join(stack.state_dir, sandbox_id)), "state dir removed")

    # kill
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
    check(status == 201, f"second create: {status} {body}")
    second = body["sandboxID"]
    status, _, _ = stack.request("DELETE", f"/sandboxes/{second}")
    check(status == 204, f"DELETE -> {status}")
    check(sandbox_row(stack, second)[0] == "killed", "row killed")
    check(any(e["type"] == "killed" and e["sandbox_id"] == second for e in stack.events()), "killed event")
    check(not os.path.exists(os.path.join(stack.state_dir, second)), "state dir removed after kill")

    # the base template (Debian + python3): a Python one-liner through the agent
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "base", "timeout": 60})
    check(status == 201, f"base create: {status} {body}")
    address = sandbox_row(stack, body["sandboxID"])[2]
    output = run_in_sandbox(stack, body["sandboxID"], body["envdAccessToken"], body["envdVersion"],
                            address, "python3 -c 'print(6*7)'")
    check(output.strip() == "42", f"python3 in a base sandbox: {output!r}")
    print("python3 ran in a base sandbox:", output.strip())
    status, _, _ = stack.request("DELETE", f"/sandboxes/{body['sandboxID']}")
    check(status == 204, f"DELETE base -> {status}")

    # validation and isolation
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "network": {
        "allowOut": ["example.com"]}})
    check(status == 400 and "ALL_TRAFFIC" in body["message"], f"domain without ALL_TRAFFIC: {status} {body}")
    status, body, _ = stack.request("POST", "/sandboxes", b"{not json")
    check(status == 400, f"malformed JSON -> {status}")
    status, body, _ = stack.request("GET", "/sandboxes/iaaaaaaaaaaaaaaaaaaaa")
    check(status == 404 and "doesn't exist or you don't have access to it" in body["message"], f"404: {body}")


def test_refused_create_delivered(stack):
    """A create the API refused (its produce timed out: 503, request row
    `failed` with the API's {code, message}) whose command reached Kafka
    after all: the worker finds the row no longer starting and repeats the
    recorded outcome as a valid `failed` result, and goes on serving
    creates (it used to retry that outcome forever, holding the create
    pipeline). Emulated: a killed sandbox's create command produced again
    after its request row was rewritten as the API records a refusal."""
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
    check(status == 201, f"create: {status} {body}")
    sandbox_id = body["sandboxID"]
    status, _, _ = stack.request("DELETE", f"/sandboxes/{sandbox_id}")
    check(status == 204, f"DELETE -> {status}")
    command = next(e for e in stack.events("warren.sandbox.commands") if e["sandbox_id"] == sandbox_id)
    request_id = command["request_id"]
    stack.psql(f"UPDATE requests SET status = 'failed', result = "
               f"'{{\"code\": 503, \"message\": \"Kafka unavailable\"}}' "
               f"WHERE request_id = '{request_id}'")
    subprocess.run(["kcat", "-b", stack.brokers, "-P", "-t", f"{stack.prefix}warren.sandbox.commands",
                    "-k", sandbox_id], input=json.dumps(command), text=True, check=True, timeout=30)
    failed = wait_for(lambda: next((e for e in stack.events() if e["request_id"] == request_id
                                    and e["type"] == "failed"), None), 20,
                      "a failed result for the refused create delivered late\n" + stack.log("worker")[-2000:])
    result = failed["result"]
    check(result.get("command") == "create" and result.get("code") == 503
          and result.get("message") == "Kafka unavailable", f"the recorded refusal repeated: {result}")
    check("does not encode" not in stack.log("worker"), "every result the worker built encoded")
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
    check(status == 201, f"a create after it: {status} {body}")
    stack.request("DELETE", f"/sandboxes/{body['sandboxID']}")
    print("a refused create delivered late: its recorded refusal repeated, the worker goes on")


def pids_in_cgroup_of(sandbox_id):
    """Host pids whose cgroup path names the sandbox (its jail's processes)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                if sandbox_id in f.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def test_placement_and_supervision(stack):
    # placement: metadata warren.runtime picks the runtime's create topic
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "metadata": {
        "warren.runtime": "vm"}})
    check(status == 503 and body["message"] == "no worker host with the vm runtime is ready",
          f"vm asked with only a jail host: {status} {body}")
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "metadata": {
        "warren.runtime": "qemu"}})
    check(status == 400 and "warren.runtime" in body["message"], f"bad runtime: {status} {body}")
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60,
                                                           "metadata": {"warren.runtime": "jail"}})
    check(status == 201, f"jail asked: {status} {body}")
    sandbox_id = body["sandboxID"]
    placed = [e for e in stack.events("warren.sandbox.commands.jail") if e["sandbox_id"] == sandbox_id]
    check(len(placed) == 1 and placed[0]["spec"].get("runtime") == "jail", f"jail topic: {placed}")

    # supervision: the sandbox's processes killed from the host -> failed
    pids = pids_in_cgroup_of(sandbox_id)
    check(pids, f"no process in the cgroup of {sandbox_id}")
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    wait_for(lambda: sandbox_row(stack, sandbox_id)[0] == "failed", 15, "the dead sandbox to be marked failed")
    reason = sandbox_row(stack, sandbox_id)[3]
    check(reason.startswith("the sandbox's init exited"), f"failure reason: {reason!r}")
    wait_for(lambda: any(e["type"] == "killed" and e["sandbox_id"] == sandbox_id and
                         e["result"].get("reason") == reason for e in stack.events()), 10, "killed event")
    check(not os.path.exists(os.path.join(stack.state_dir, sandbox_id)), "state dir removed after its end")
    print(f"placement by warren.runtime works; a killed jail init is noticed: {reason}")


def test_sdk_pipeline(stack):
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "sdk_pipeline.cjs")],
                         env=dict(os.environ, E2B_SDK_DIR=SDK_DIR, E2B_API_URL=stack.api_url,
                                  E2B_API_KEY=stack.api_key, E2B_DOMAIN="warren.test",
                                  WARREN_PG_URL=stack.pg_url),
                         capture_output=True, text=True, timeout=120)
    print(out.stdout)
    check(out.returncode == 0, "SDK pipeline failed:\n" + out.stdout + out.stderr)


def test_sdk_rate_limit(stack):
    """The SDK maps our 429 to RateLimitError (docs/ratelimit.md)."""
    stack.warren("admin", "team", "set-limit", stack.tag, "lifecycle_requests", "3")
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "sdk_rate_limit.cjs")],
                         env=dict(os.environ, E2B_SDK_DIR=SDK_DIR, E2B_API_URL=stack.api_url,
                                  E2B_API_KEY=stack.api_key, E2B_DOMAIN="warren.test"),
                         capture_output=True, text=True, timeout=60)
    print(out.stdout.strip())
    check(out.returncode == 0, "SDK RateLimitError test failed:\n" + out.stdout + out.stderr)
    # The limiter may admit a request on credit (docs/ratelimit.md,
    # "Non-blocking decisions": at most c = max(1, B/20) beyond the burst
    # per instance), so the 429 comes within a few more requests.
    for _ in range(4):
        status, body, headers = stack.request("GET", "/sandboxes")
        lowered = {k.lower(): v for k, v in headers.items()}
        if status == 429:
            break
    check(status == 429 and "retry-after" in lowered and "ratelimit-limit" in lowered,
          f"429 with headers: {status} {lowered}")


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups)")
        return 1
    with Stack("e2e", with_base=True) as stack:
        stack.start()
        test_api_pipeline(stack)
        test_refused_create_delivered(stack)
        test_placement_and_supervision(stack)
        test_sdk_pipeline(stack)
        test_sdk_rate_limit(stack)
        leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        stack.kill("worker")
        left = [l for l in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
                if stack.tag in l]
        check(not left, f"slot namespaces left after the worker stopped: {left} (before: {leftover})")
    print(f"e2e pipeline: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
