"""e2e (labels e2e, scale): a worker host that stops heartbeating is
declared lost (workers/README.md, "Placement and supervision"). Two worker
hosts of one stack; a sandbox on the first; the first is stopped (SIGSTOP:
alive but silent, as in a partition); within host_lost_after_s (3 s here)
plus the 5 s sweep the second declares it `down` and the sandbox `failed`
("lost: host <id> stopped heartbeating", with a `killed` result); creates
still succeed, on the second; when the first comes back (SIGCONT) it sees
that it was declared lost and stops the sandbox it still ran."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, check, check_count, wait_for  # noqa: E402
from test_pipeline import sandbox_row  # noqa: E402


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups)")
        return 1
    lost_after = {"WARREN_HOST_LOST_AFTER_S": "3"}
    with Stack("hlost", extra_env=lost_after) as stack:
        stack.start()
        second = stack.spawn_second_worker(os.environ.get("WARREN_TEST_SLOT_CIDR2", "10.212.0.0/16"))
        try:
            stack.wait_log("worker2", "ready:", 60)
            # a sandbox on the first host (the group spreads creates)
            victim = None
            for _ in range(12):
                status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 300})
                check(status == 201, f"create: {status} {body}")
                if sandbox_row(stack, body["sandboxID"])[1] == stack.host_id:
                    victim = body["sandboxID"]
                    break
            check(victim is not None, "no create landed on the first host")
            first = stack.processes["worker"]
            os.kill(first.pid, signal.SIGSTOP)
            stopped = time.time()
            try:
                wait_for(lambda: sandbox_row(stack, victim)[0] == "failed", 30,
                         "the silent host's sandbox to be marked failed")
                lost_s = time.time() - stopped
                reason = sandbox_row(stack, victim)[3]
                check(reason == f"lost: host {stack.host_id} stopped heartbeating", f"reason: {reason!r}")
                check(stack.psql(f"SELECT state FROM hosts WHERE id = '{stack.host_id}'") == "down",
                      "the silent host is down")
                wait_for(lambda: any(e["type"] == "killed" and e["sandbox_id"] == victim and
                                     e["result"].get("reason") == reason for e in stack.events()),
                         15, "the killed result")
                print(f"host declared lost {lost_s:.1f} s after it went silent (bound 3 s + 5 s sweep)")
                # new creates still get a sandbox, on the second host
                created = 0
                deadline = time.time() + 40
                while created < 2 and time.time() < deadline:
                    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
                    if status == 201:
                        check(sandbox_row(stack, body["sandboxID"])[1] == second, "placed on the second")
                        created += 1
                check(created == 2, "creates succeed while a host is lost")
            finally:
                os.kill(first.pid, signal.SIGCONT)
            wait_for(lambda: "this host was declared lost" in stack.log("worker"), 30,
                     "the first host to notice it was declared lost")
            wait_for(lambda: not os.path.exists(os.path.join(stack.state_dir, victim)), 30,
                     "the first host to stop the sandbox it still ran")
            print("the returning host stopped the sandbox it still ran")
        finally:
            stack.kill("worker2")
            for parent in ("warren-" + stack.tag + "-2",):
                try:
                    os.rmdir(os.path.join("/sys/fs/cgroup", parent))
                except OSError:
                    pass
    print(f"host lost: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
