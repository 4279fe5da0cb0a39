"""e2e (labels e2e, scale, slow): 100 creates in flight against one worker,
the worker SIGKILLed in the middle and started again (workers/README.md,
"Concurrent creates"). Every request completes exactly once:

- every HTTP create answers 201 (none lost, none left to the API's deadline);
- PostgreSQL: one sandbox row and one finished `requests` row per request;
  a sandbox whose create was not durable when the worker died (row still
  `starting`) was redelivered and runs now, started by the new process;
  one that was already running is not started a second time (its jail died
  with the worker: reconcile ends it `failed`, "lost: the worker restarted");
  no sandbox's state history says `running` twice;
- the results topic: every request has an outcome, and all the events of
  one request say the same thing (a redelivery repeats the first outcome);
- offsets are committed only after durability: every create that was not
  durable at the kill is seen again by the new process (else it would be
  lost); the jails running afterwards are exactly the running rows.

The worker's capacity and create concurrency are set so that 100 fit."""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, Stack, check, check_count, wait_for  # noqa: E402

COUNT = 100


def phase_rows(stack):
    """{sandbox id: state} of this test's sandboxes."""
    out = stack.psql("SELECT id, state FROM sandboxes WHERE metadata->>'phase' = 'crash'")
    return dict(line.split("|") for line in out.splitlines() if line)


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups)")
        return 1
    env = {"WARREN_WORKER_CREATE_CONCURRENCY": str(COUNT), "WARREN_CREATE_DEADLINE_MS": "240000",
           "WARREN_SLOT_PRECREATE": "8"}
    with Stack("scl", capacity=2 * COUNT, extra_env=env) as stack:
        stack.start()
        stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "10000")
        stack.warren("admin", "team", "set-limit", stack.tag, "concurrent_sandboxes", "1000")
        started = time.time()
        batch = subprocess.Popen([os.path.join(BIN, "warren"), "batch", "create", "--count", str(COUNT),
                                  "--template", "minimal", "--concurrency", str(COUNT), "--timeout", "600",
                                  "--metadata", "phase=crash", "--json", "--api-url", stack.api_url,
                                  "--api-key", stack.api_key],
                                 env=stack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        # mid-way: some creates durable (running), others in the worker's hands
        def some_running():
            rows = phase_rows(stack)
            return sum(state == "running" for state in rows.values()) >= COUNT // 5
        wait_for(some_running, 240, f"{COUNT // 5} running sandboxes", interval=0.05)
        worker = stack.processes.pop("worker")
        os.kill(worker.pid, signal.SIGKILL)  # the worker alone, as a crash: its jails stay orphans
        worker.wait()
        at_kill = phase_rows(stack)
        durable = {sandbox for sandbox, state in at_kill.items() if state != "starting"}
        pending = set(at_kill) - durable
        print(f"SIGKILL after {time.time() - started:.1f} s: {len(at_kill)} rows admitted, "
              f"{len(durable)} durable (running), {len(pending)} still starting")
        check(pending or len(at_kill) < COUNT, "the kill came after every create was durable")

        stack.start_worker("worker2")
        out, err = batch.communicate(timeout=400)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        check(lines, f"batch printed no summary: {out}{err}")
        summary = json.loads(lines[-1])
        check(summary["created"] == COUNT and summary["failed"] == 0,
              f"batch: created {summary['created']}, failed {summary['failed']}: {summary['failures']}")
        print(f"all {COUNT} answered 201 in {summary['elapsed_ms'] / 1000:.1f} s "
              f"(p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms)")
        request_ids = {r["request_id"] for r in summary["results"]}
        answered = {r["sandbox_id"] for r in summary["results"]}
        check(len(request_ids) == COUNT and len(answered) == COUNT, "one sandbox per request")

        # PostgreSQL: rows, requests, state history
        rows = phase_rows(stack)
        check(set(rows) == answered, f"rows {len(rows)} vs answered {len(answered)}")
        lost = [s for s in pending if rows[s] != "running"]
        check(not lost, f"creates not durable at the kill that did not run after it: {lost}")
        restarted = [s for s in durable if rows[s] != "failed"]
        check(not restarted, f"sandboxes running at the kill that are not ended as lost: {restarted}")
        reasons = stack.psql("SELECT DISTINCT failure_reason FROM sandboxes WHERE metadata->>'phase' = 'crash' "
                             "AND state = 'failed'")
        check(not durable or reasons == "lost: the worker restarted", f"failure reasons: {reasons}")
        requests = stack.psql("SELECT sandbox_id, status, count(*) OVER (PARTITION BY sandbox_id) FROM requests "
                              "WHERE type = 'create' AND sandbox_id IN (SELECT id FROM sandboxes WHERE "
                              "metadata->>'phase' = 'crash')")
        request_rows = [line.split("|") for line in requests.splitlines() if line]
        check(len(request_rows) == COUNT and all(n == "1" and status == "done" for _, status, n in request_rows),
              f"requests rows: {[r for r in request_rows if r[1] != 'done' or r[2] != '1'][:5]}")
        twice = stack.psql("SELECT sandbox_id FROM sandbox_events WHERE type = 'state_changed' AND "
                           "payload->>'to' = 'running' AND sandbox_id IN (SELECT id FROM sandboxes WHERE "
                           "metadata->>'phase' = 'crash') GROUP BY sandbox_id HAVING count(*) <> 1")
        check(not twice, f"sandboxes whose history says running twice: {twice}")

        # the new process ran exactly the creates that were not durable
        second = set(re.findall(r"sandbox (\S+): running \(", stack.log("worker2")))
        check(pending <= second, f"not redelivered to the new process: {pending - second}")
        check(not (durable & second), f"started again by the new process: {durable & second}")
        jails = [entry for entry in os.listdir("/sys/fs/cgroup/warren-" + stack.tag) if entry.startswith("i")] \
            if os.path.isdir("/sys/fs/cgroup/warren-" + stack.tag) else None
        running = {s for s, state in rows.items() if state == "running"}
        check(jails is None or set(jails) == running,
              f"jails {len(jails or [])} vs running rows {len(running)}")

        # the results topic: an outcome per request, never two different ones
        outcomes = {}
        for event in stack.events():
            if event.get("request_id") in request_ids:
                outcomes.setdefault(event["request_id"], set()).add((event["type"], event.get("sandbox_id")))
        missing = request_ids - set(outcomes)
        check(not missing, f"requests without a result event: {len(missing)}")
        conflicting = {r: o for r, o in outcomes.items() if len(o) != 1}
        check(not conflicting, f"requests with differing results: {list(conflicting.items())[:3]}")
        check(all(next(iter(o))[0] == "created" for o in outcomes.values()), "a result that is not created")
        print(f"{len(pending)} redelivered and run once by the new process, {len(durable)} not run again; "
              f"{len(outcomes)} requests with one outcome each")
        stack.kill("worker2")
    print(f"create crash: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
