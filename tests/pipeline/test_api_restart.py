"""Fault (labels e2e, pipeline, slow): restart warren-api while create
requests wait for their result. The worker is stopped first so the creates
are queued in Kafka with their rows `starting`; the API is then stopped
(SIGKILL for a crash, then SIGTERM on the second round) and started again.
Every client gets an error or a result, and once a worker runs every row
reaches `running`: the new API finds each sandbox with GET, and answers
new creates."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
from faults import Stack, check, wait_for  # noqa: E402

COUNT = 6


def one_round(stack, how, label):
    started = time.time()
    stack.kill("worker" if label == "a" else "worker-" + chr(ord(label) - 1))
    before = set(faults.rows(stack))
    batch = faults.start_batch(stack, "create", "--count", str(COUNT), "--template", "minimal",
                               "--concurrency", str(COUNT), "--timeout", "600",
                               "--metadata", "round=" + label)
    wait_for(lambda: sum(1 for i, (state, _, _) in faults.rows(stack).items()
                         if i not in before and state == "starting") == COUNT, 30,
             f"{COUNT} rows starting")
    stack.kill("api", how)  # the clients are waiting for their results
    result = faults.batch_result(batch, 60)
    stack.start_api()
    results = result["results"]
    check(len(results) == COUNT, "one outcome per request")
    check(all(not r["ok"] and r.get("error") for r in results),
          f"every waiting client got an error when the API went away: {result['failures']}")
    print(f"API {signal.Signals(how).name}: clients got {result['failures']}")

    mine = {i: row for i, row in faults.rows(stack).items() if i not in before}
    check(len(mine) == COUNT, f"{len(mine)} rows for {COUNT} creates")
    stack.start_worker("worker-" + label)
    wait_for(lambda: all(faults.rows(stack)[i][0] == "running" for i in mine), 60,
             "every queued create running: " + str(faults.state_counts(stack)))
    for sandbox_id in mine:
        status, body, _ = stack.request("GET", f"/sandboxes/{sandbox_id}")
        check(status == 200 and body["state"] == "running", f"GET {sandbox_id}: {status} {body}")
        done = stack.psql(f"SELECT status FROM requests WHERE sandbox_id = '{sandbox_id}' AND type = 'create'")
        check(done == "done", f"{sandbox_id}: request {done}")
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
    check(status == 201, f"a create after the restart: {status} {body}")
    print(f"round {label}: {COUNT} queued creates running after the API restart, "
          f"a new create answered 201 ({time.time() - started:.1f} s)")


def main():
    faults.require_root()
    with Stack("arest") as stack:
        stack.start()
        stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "1000")
        one_round(stack, signal.SIGKILL, "a")
        one_round(stack, signal.SIGTERM, "b")
        stack.kill("worker-b")
        faults.check_nothing_left(stack)
        print(f"API restart: {faults.check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
