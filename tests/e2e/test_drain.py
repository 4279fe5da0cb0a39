"""e2e (labels e2e, scale): an operator drains a worker host (docs/deploy.md,
"Drain a worker host"). Two worker hosts of one stack; a sandbox on the
first; `warren admin host drain <first>`: the row says `draining` at once
and keeps saying it (its heartbeats), the first worker leaves the shared
create topic's group, every new create lands on the second, while the
sandbox already on the first keeps running. A restart of the drained worker keeps
the drain. `warren admin host undrain` lifts it: the first host takes
creates again."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, Stack, check, check_count, wait_for  # noqa: E402
from test_pipeline import sandbox_row  # noqa: E402


def create(stack, timeout=300):
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": timeout})
    check(status == 201, f"create: {status} {body}")
    return body["sandboxID"]


def host_state(stack, host_id):
    return stack.psql(f"SELECT state || ':' || drain_requested FROM hosts WHERE id = '{host_id}'")


def creates_land_on(stack, host_id, count):
    ids = [create(stack, 60) for _ in range(count)]
    hosts = [sandbox_row(stack, i)[1] for i in ids]
    check(all(h == host_id for h in hosts), f"{count} creates on {host_id}: {hosts}")
    return ids


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups)")
        return 1
    with Stack("drain") as stack:
        stack.start()
        second = stack.spawn_second_worker(os.environ.get("WARREN_TEST_SLOT_CIDR2", "10.212.0.0/16"))
        try:
            stack.wait_log("worker2", "ready:", 60)
            first = stack.host_id
            kept = None
            for _ in range(12):
                sandbox_id = create(stack)
                if sandbox_row(stack, sandbox_id)[1] == first:
                    kept = sandbox_id
                    break
            check(kept is not None, "no create landed on the first host")

            out = stack.warren("admin", "host", "drain", first)
            check("draining" in out, f"drain: {out!r}")
            check(host_state(stack, first) == "draining:true", f"row after drain: {host_state(stack, first)}")
            wait_for(lambda: "drained by an operator" in stack.log("worker"), 15, "the worker to see its drain")
            time.sleep(2.5)  # two heartbeats: they keep it draining
            check(host_state(stack, first) == "draining:true", "the heartbeat keeps the drain")
            listing = stack.warren("admin", "host", "list")
            check(any(line.startswith(first) and " yes " in line for line in listing.splitlines()),
                  f"host list shows the drain: {listing!r}")
            # every new create on the second host (the group gave it every
            # partition of the shared topic; the API counts only ready hosts)
            drained_ids = creates_land_on(stack, second, 6)
            print(f"drained: 6 creates all on the other host; {first[-6:]} is {host_state(stack, first)}")
            # the sandbox already on the drained host runs on
            check(sandbox_row(stack, kept)[0] == "running", "the drained host's sandbox still runs")
            check(os.path.exists(os.path.join(stack.state_dir, kept)), "its files are still there")

            # a restart keeps the drain
            stack.kill("worker")
            stack.start_worker()
            time.sleep(2.5)
            check(host_state(stack, first) == "draining:true", "a restarted worker stays drained")
            creates_land_on(stack, second, 2)

            out = stack.warren("admin", "host", "undrain", first)
            check("lifted" in out, f"undrain: {out!r}")
            wait_for(lambda: host_state(stack, first) == "ready:false", 10, "the host to be ready again")
            wait_for(lambda: "drain lifted" in stack.log("worker"), 15, "the worker to see the lift")
            # creates reach the first host again (the group spreads them)
            landed = False
            deadline = time.time() + 60
            while not landed and time.time() < deadline:
                sandbox_id = create(stack, 60)
                landed = sandbox_row(stack, sandbox_id)[1] == first
            check(landed, "after undrain a create lands on the first host again")
            print("undrain: the first host takes creates again")
            status, _, _ = stack.request("DELETE", f"/sandboxes/{drained_ids[0]}")
            check(status == 204, f"kill: {status}")
            out = subprocess.run([os.path.join(BIN, "warren"), "admin", "host", "drain", "no-such-host"],
                                 env=stack.env(), capture_output=True, text=True)
            check(out.returncode == 1 and "no host 'no-such-host'" in out.stderr,
                  f"drain of an unknown host: rc {out.returncode} {out.stderr!r}")
        finally:
            stack.kill("worker2")
            try:
                os.rmdir(os.path.join("/sys/fs/cgroup", "warren-" + stack.tag + "-2"))
            except OSError:
                pass
    print(f"drain: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
