"""Fault (labels e2e, pipeline, ship, slow): a three-broker KRaft cluster
of the test's own (`WARREN_KAFKA_NODES=3 scripts/dev-stack up kafka` in a
private dir, free ports; topics replicated 3, min.insync.replicas 2), a
100-sandbox create batch through the API (16 at a time, jail runtime,
minimal template), and the broker that is the active controller
SIGKILLed once a fifth of the batch is answered, restarted 10 s later.
PostgreSQL is the shared dev-stack server.

Every request ends in exactly one terminal state, none lost, none
duplicated: one answer per request within its limit; a 201 is one
`running` row; an accepted create (504 "still starting") is one row that
ended (`running`, or `failed` when its start failed: printed); a refused
one (503) is no row or a `failed` one; no row is left `starting`; one row
per request at most and no request id twice; on the results topic every
request has exactly one kind of outcome (created or failed, repeated
copies of the same outcome are counted and printed: a command delivered
again after a rebalance is answered again, never started twice) and it
matches its row. Prints the answers during the failover and the p50/p99
create latency of the requests in flight during it."""
import concurrent.futures
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
from faults import check, wait_for  # noqa: E402
from test_broker_restart import create, percentile, ANSWER_LIMIT_S, CREATE_DEADLINE_MS  # noqa: E402

COUNT = 100
CONCURRENCY = 16
DOWN_S = 10


def run_batch(stack, cluster):
    """The batch with the controller node killed after a fifth is answered
    and restarted DOWN_S later; returns (results, kill time, back time)."""
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = [pool.submit(create, stack, i) for i in range(COUNT)]
        wait_for(lambda: sum(f.done() for f in futures) >= COUNT // 5, 240, "a fifth answered")
        node = cluster.controller()
        killed = time.time()  # the signal, not the process gone (kill waits)
        cluster.kill(node)
        print(f"broker {node} (the controller) SIGKILLed with "
              f"{sum(f.done() for f in futures)} of {COUNT} answered")
        time.sleep(DOWN_S)
        cluster.up()
        back = time.time()
        print(f"broker {node} back {back - killed:.1f} s after the kill "
              f"({sum(f.done() for f in futures)} answered by then)")
        results = [future.result() for future in futures]
    return results, killed, back


def check_answers(results, killed, back):
    """One answer per request, in time; prints the latency figures."""
    check(sorted(r[0] for r in results) == list(range(COUNT)), "one answer per request")
    for index, status, body, started, ended in results:
        check(status is not None, f"request {index}: no answer within {ANSWER_LIMIT_S} s: {body}")
        check(ended - started < ANSWER_LIMIT_S, f"request {index} took {ended - started:.1f} s")
        check(status in (201, 503, 504) or (500 <= status <= 599 and body.get("message")),
              f"request {index}: 201, or a 5xx with a message, got {status} {body}")
    answers, during = {}, []
    for _, status, body, started, ended in results:
        if ended >= killed and started <= back:
            during.append(ended - started)
            message = re.sub(r"sandbox \w+|/sandboxes/\w+", "sandbox <id>", body.get("message", ""))
            key = f"{status} {message[:70]}" if status != 201 else "201"
            answers[key] = answers.get(key, 0) + 1
    check(during, "requests of the batch were in flight during the failover")
    print(f"answers of the {len(during)} requests in flight during the failover:")
    for key, count in sorted(answers.items()):
        print(f"  {count:3d} x {key}")
    latencies = [ended - started for _, _, _, started, ended in results]
    before = [ended - started for _, _, _, started, ended in results if ended < killed]
    if before:  # the same machine's baseline: creates answered before the kill
        print(f"create latency before the kill ({len(before)} creates): "
              f"p50 {percentile(before, 0.5):.2f} s, p99 {percentile(before, 0.99):.2f} s")
    print(f"create latency during the failover: p50 {percentile(during, 0.5):.2f} s, "
          f"p99 {percentile(during, 0.99):.2f} s, max {max(during):.2f} s")
    print(f"create latency over the batch: p50 {percentile(latencies, 0.5):.2f} s, "
          f"p99 {percentile(latencies, 0.99):.2f} s")


def check_rows(stack, results):
    """Rows: one terminal state per request, matching its answer."""
    wait_for(lambda: faults.state_counts(stack).get("starting", 0) == 0, 120,
             "no row left starting: " + str(faults.state_counts(stack)))
    by_index = {}
    for line in stack.psql("SELECT coalesce(metadata->>'index', ''), id, state, "
                           "coalesce(request_id::text, '') FROM sandboxes "
                           "WHERE metadata->>'suite' = 'brest'").splitlines():
        index, sandbox_id, state, request_id = line.split("|", 3)
        by_index.setdefault(index, []).append((sandbox_id, state, request_id))
    outcome = {}
    for index, status, body, _, _ in results:
        mine = by_index.get(str(index), [])
        check(len(mine) <= 1, f"request {index} made {len(mine)} rows: {mine}")
        states = [state for _, state, _ in mine]
        if status == 201:
            check(states == ["running"] and mine[0][0] == body.get("sandboxID"),
                  f"request {index} (201 {body.get('sandboxID')}): rows {mine}")
        elif status == 504:  # accepted, its result late: ended by now (a start may fail)
            check(states in (["running"], ["failed"]), f"request {index} (504, accepted): rows {mine}")
            if states == ["failed"]:
                print(f"request {index} (504) ended failed: {faults.rows(stack)[mine[0][0]][1]}")
        else:
            check(states in ([], ["failed"]), f"request {index} ({status}): rows {mine}")
        if mine:
            outcome[mine[0][0]] = mine[0]
    duplicates = stack.psql("SELECT count(*) FROM (SELECT request_id FROM requests "
                            "GROUP BY request_id HAVING count(*) > 1) d")
    check(duplicates == "0", f"{duplicates} request ids twice")
    return outcome


def check_results_topic(stack, outcome):
    """Each row's request has exactly one kind of outcome on the results
    topic, and it is the row's state."""
    wanted = {"running": "created", "failed": "failed"}
    kinds, copies = {}, 0
    for event in stack.events():
        if event.get("sandbox_id") in outcome and event.get("type") in ("created", "failed"):
            seen = kinds.setdefault(event["sandbox_id"], [])
            copies += event["type"] in seen
            seen.append(event["type"])
    for sandbox_id, (_, state, _) in outcome.items():
        seen = set(kinds.get(sandbox_id, []))
        if state == "failed" and not seen:
            continue  # refused by the API before any command was queued
        check(seen == {wanted[state]},
              f"{sandbox_id} ({state}): outcomes on the results topic {kinds.get(sandbox_id)}")
    print(f"results topic: one outcome per request ({copies} repeated copies of an outcome)")


def main():
    faults.require_root()
    cluster = faults.TestKafka(3)
    try:
        cluster.up()
        os.environ.update({"WARREN_KAFKA_BROKERS": cluster.address,
                           "WARREN_KAFKA_REPLICATION_FACTOR": "3",
                           "WARREN_KAFKA_MIN_INSYNC_REPLICAS": "2"})
        with faults.Stack("bfail", capacity=128,
                          extra_env={"WARREN_CREATE_DEADLINE_MS": str(CREATE_DEADLINE_MS)}) as stack:
            stack.start()
            stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "1000")
            started = time.time()
            results, killed, back = run_batch(stack, cluster)
            print(f"batch answered in {time.time() - started:.1f} s: " +
                  str({s: sum(1 for r in results if r[1] == s) for s in sorted({r[1] or 0 for r in results})}))
            check_answers(results, killed, back)
            outcome = check_rows(stack, results)
            check_results_topic(stack, outcome)
            running = [i for i, (state, _, _) in faults.rows(stack).items() if state == "running"]
            check(len(running) >= COUNT // 2,
                  f"{len(running)} of {COUNT} running: two brokers of three kept the batch going")
            faults.check_host_matches(stack, running, 128)
            stack.kill("api")
            stack.kill("worker")
            faults.check_nothing_left(stack)
            print(f"broker failover: {len(running)} running, {faults.check_count()} checks passed")
    finally:
        cluster.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
