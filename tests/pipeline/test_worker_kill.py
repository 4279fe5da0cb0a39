"""Fault (labels e2e, pipeline, slow): SIGKILL warren-worker in the middle
of a 50-sandbox `warren batch create`, start a new worker with the same
host id. Every request ends in exactly one outcome, every row leaves
`starting` (the uncommitted create is redelivered), no sandbox or request
id twice, and the host holds exactly the jails of the running rows (the
new worker's reconcile stopped the orphans); after a clean stop nothing
is left (state dirs, cgroups, slot namespaces)."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
from faults import Stack, check, wait_for  # noqa: E402

COUNT = 50


def main():
    faults.require_root()
    with Stack("wkill", capacity=64) as stack:
        stack.start()
        # 5 creates/s for a pro team: raise it so the batch is quick (429s
        # would still be retried; the rate limiter has its own tests).
        stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "1000")
        started = time.time()
        batch = faults.start_batch(stack, "create", "--count", str(COUNT), "--template", "minimal",
                                   "--concurrency", "6", "--timeout", "600", "--metadata", "suite=wkill")
        wait_for(lambda: faults.state_counts(stack).get("running", 0) >= 12, 60, "12 running sandboxes")
        victim = stack.processes.pop("worker")
        os.kill(victim.pid, signal.SIGKILL)  # the worker only: its jails become orphans
        victim.wait()
        counts_at_kill = faults.state_counts(stack)
        print(f"worker SIGKILLed after {time.time() - started:.1f} s: rows {counts_at_kill}")
        stack.start_worker("worker2")  # a new log: "ready:" of its own
        print(f"new worker ready after {time.time() - started:.1f} s")
        result = faults.batch_result(batch, 150)
        print(f"batch done after {time.time() - started:.1f} s: created {result['created']}, "
              f"failed {result['failed']} {result['failures']}, rate-limited {result['rate_limited']}")

        # every request: exactly one outcome, ids unique
        results = result["results"]
        check(len(results) == COUNT and sorted(r["index"] for r in results) == list(range(COUNT)),
              "one outcome per request")
        request_ids = [r["request_id"] for r in results]
        check(len(set(request_ids)) == len(request_ids), "no request id twice")
        created = [r["sandbox_id"] for r in results if r["ok"]]
        check(len(set(created)) == len(created), "no sandbox id answered twice")
        check(all(r["status"] == 201 or r.get("error") for r in results), "failures carry an error")

        # every row leaves `starting` (redelivery) and no request made two rows
        wait_for(lambda: faults.state_counts(stack).get("starting", 0) == 0, 60,
                 "no row left in starting: " + str(faults.state_counts(stack)))
        table = faults.rows(stack)
        check(all(state in faults.TERMINAL for state, _, _ in table.values()), f"states: {faults.state_counts(stack)}")
        row_requests = [request_id for _, _, request_id in table.values()]
        check(len(set(row_requests)) == len(row_requests), "one row per request id")
        duplicates = stack.psql("SELECT count(*) FROM (SELECT request_id FROM requests "
                                "GROUP BY request_id HAVING count(*) > 1) d")
        check(duplicates == "0", f"{duplicates} duplicate request ids")
        for r in results:
            row = table.get(r.get("sandbox_id", ""))
            if r["ok"]:
                check(row is not None, f"201 for {r['sandbox_id']} without a row")
                state, reason, request_id = row
                check(request_id == r["request_id"], f"{r['sandbox_id']}: row's request id {request_id}")
                check(state == "running" or (state == "failed" and reason.startswith("lost")),
                      f"201 for {r['sandbox_id']} but the row is {state} ({reason})")
        check(len(table) <= COUNT, f"{len(table)} rows for {COUNT} requests")
        lost = sum(1 for state, reason, _ in table.values() if state == "failed" and reason.startswith("lost"))
        check(lost > 0, "the SIGKILLed worker's running sandboxes were marked lost by the reconcile")
        print(f"rows: {faults.state_counts(stack)} ({lost} lost with the killed worker)")

        # the host holds exactly the running ones; the running ones answer
        running = [sandbox_id for sandbox_id, (state, _, _) in table.items() if state == "running"]
        faults.check_host_matches(stack, running, COUNT + 2)
        for sandbox_id in running[:5]:
            status, body, _ = stack.request("GET", f"/sandboxes/{sandbox_id}")
            check(status == 200 and body["state"] == "running", f"GET {sandbox_id}: {status} {body}")

        # a clean stop leaves nothing
        stack.kill("worker2")
        faults.check_nothing_left(stack)
        print(f"worker kill: {faults.check_count()} checks passed in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
