"""e2e (labels e2e, scale): the worker's warm pool (workers/README.md, "Warm
pools") through the real warren-api, Kafka, warren-worker (jail runtime)
and PostgreSQL: a create claims a warm sandbox (the worker's log says so)
which then answers as its own (name, E2B_SANDBOX_ID, its access token only);
20 creates at once against a pool of 4 each get their own sandbox and no
warm sandbox serves two; the pool refills; a worker stop leaves nothing."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, Stack, check, check_count, wait_for  # noqa: E402
from test_pipeline import run_in_sandbox, sandbox_row  # noqa: E402

POOL = 4


def ready_count(stack):
    found = re.findall(r"warm pool: minimal ready (\d+)/", stack.log("worker"))
    return int(found[-1]) if found else 0


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups)")
        return 1
    with Stack("warm", capacity=64, extra_env={"WARREN_WARM_POOL": f"minimal:{POOL}",
                                                "WARREN_LOG_LEVEL": "debug"}) as stack:
        stack.start()
        stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "1000")
        wait_for(lambda: ready_count(stack) == POOL, 60, f"{POOL} warm sandboxes")

        started = time.time()
        status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 120,
                                                               "envVars": {"GREETING": "warm"}})
        create_ms = (time.time() - started) * 1000
        check(status == 201, f"create: {status} {body}")
        sandbox_id = body["sandboxID"]
        wait_for(lambda: f"sandbox {sandbox_id}: claimed warm sandbox" in stack.log("worker"), 10,
                 "the claim in the worker's log")
        check(re.search(rf"sandbox {sandbox_id}: running \(.*, warm\)", stack.log("worker")),
              "the create was served warm")
        state, host, address, _ = sandbox_row(stack, sandbox_id)
        check(state == "running" and host == stack.host_id, f"row: {state} {host}")
        output = run_in_sandbox(stack, sandbox_id, body["envdAccessToken"], body["envdVersion"], address,
                                "echo $GREETING $E2B_SANDBOX_ID $(hostname)")
        check(output.strip() == f"warm {sandbox_id} {sandbox_id}", f"inside the claimed sandbox: {output!r}")
        try:
            run_in_sandbox(stack, sandbox_id, "0" * 64, body["envdVersion"], address, "true")
            check(False, "a wrong access token was accepted by a claimed sandbox")
        except AssertionError as err:
            check("running a command failed" in str(err), f"wrong token: {err}")
        print(f"warm create answered 201 in {create_ms:.0f} ms; it answers as {sandbox_id}")

        # a create with its own egress policy claims a warm one too (the
        # policy replaces the warm slot's default) and the slot enforces it
        wait_for(lambda: ready_count(stack) == POOL, 60, "the pool to refill")
        status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 120,
                                                               "network": {"denyOut": ["192.0.2.77"]}})
        check(status == 201, f"create with a policy: {status} {body}")
        policy_id = body["sandboxID"]
        check(re.search(rf"sandbox {policy_id}: running \(.*, warm\)", stack.log("worker")),
              "the create with a policy was served warm")
        slot = stack.psql(f"SELECT slot_index FROM sandboxes WHERE id = '{policy_id}'")
        listing = subprocess.run(["ip", "netns", "exec", f"{stack.tag}-slot-{slot}", "nft", "list", "table",
                                  "inet", "warren_policy"], capture_output=True, text=True).stdout
        check("192.0.2.77" in listing, f"the create's denyOut in the warm slot's policy: {listing[-800:]}")

        # 20 at once against a pool of 4: every create its own sandbox
        out = subprocess.run([os.path.join(BIN, "warren"),
                              "batch", "create", "--count", "20", "--template", "minimal", "--concurrency",
                              "20", "--timeout", "120", "--metadata", "phase=burst", "--api-url",
                              stack.api_url, "--api-key", stack.api_key],
                             env=stack.env(), capture_output=True, text=True, timeout=120)
        check(out.returncode == 0 and "created 20 of 20" in out.stdout, f"batch: {out.stdout}{out.stderr}")
        claims = re.findall(r"sandbox (\S+): claimed warm sandbox (\S+)", stack.log("worker"))
        warm_ids = [warm for _, warm in claims]
        check(len(set(warm_ids)) == len(warm_ids), f"a warm sandbox served two creates: {claims}")
        check(len({sandbox for sandbox, _ in claims}) == len(claims), "one claim per create")
        check(len(claims) >= POOL + 1, f"claims: {len(claims)}")
        running = stack.psql("SELECT count(*) FROM sandboxes WHERE state = 'running'")
        check(running == "22", f"running rows: {running}")
        print(f"burst of 20: {len(claims) - 1} served warm, the rest cold; no warm sandbox twice")

        wait_for(lambda: ready_count(stack) == POOL, 60, "the pool to refill")
        stack.kill("worker")
        log = stack.log("worker")
        check("shutting down" in log, "the worker stopped")
        left = [line for line in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                text=True).stdout.splitlines() if stack.tag in line]
        check(not left, f"slot namespaces left after the worker stopped: {left}")
        cgroups = [entry for entry in os.listdir("/sys/fs/cgroup/warren-" + stack.tag)
                   if entry.startswith("i")] if os.path.isdir("/sys/fs/cgroup/warren-" + stack.tag) else []
        check(not cgroups, f"sandbox cgroups left: {cgroups}")
    print(f"warm pool: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
