"""Fault (labels e2e, pipeline, ship, slow): the only Kafka broker SIGKILLed
in the middle of a 40-sandbox create batch (8 at a time) and restarted a few
seconds later. The broker is this test's own (`scripts/dev-stack up kafka`
in a private dir, free ports), so other tests' broker is untouched;
PostgreSQL is the shared dev-stack server.

Every create request ends in exactly one answer, within the API's create
deadline plus a margin (no hang): 201, or a 5xx carrying a message (503
"Kafka unavailable" while the broker is down). Every 201 is a `running`
row, no sandbox or request twice; a create that was queued but whose
result could not come back (504 "still starting") is `running` once the
broker is back; a 503 row is `failed`; no row is left `starting`; after the
restart the API answers 201 again without being restarted. Once the
API's producer has seen the broker go, a create is refused at once: 503
in E2B's error shape ({"code": 503, "message": "... Kafka ..."}) with
Retry-After, well under the produce timeout (no HTTP thread held for it).
Prints the answers seen during the outage and the p50/p99 create latency."""
import concurrent.futures
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
from faults import check, wait_for  # noqa: E402

COUNT = 40
CONCURRENCY = 8
CREATE_DEADLINE_MS = 20000
# The longest a create may take: its deadline, the produce timeout (5 s)
# before it, and a margin for a loaded machine.
ANSWER_LIMIT_S = CREATE_DEADLINE_MS / 1000 + 5 + 15
DOWN_S = 4
# A create refused while the broker is known down answers in less than the
# produce timeout (5 s) it used to wait out.
REFUSE_LIMIT_S = 4


def create(stack, index):
    """One POST /sandboxes: (index, status or None for no answer, body, start, end)."""
    body = json.dumps({"templateID": "minimal", "timeout": 300,
                       "metadata": {"suite": "brest", "index": str(index)}}).encode()
    req = urllib.request.Request(stack.api_url + "/sandboxes", data=body, method="POST")
    req.add_header("X-API-Key", stack.api_key)
    req.add_header("Content-Type", "application/json")
    started = time.time()
    try:
        with urllib.request.urlopen(req, timeout=ANSWER_LIMIT_S) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    except OSError as err:  # no answer within the limit, or the connection dropped
        return index, None, {"message": repr(err)}, started, time.time()
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {"message": raw.decode(errors="replace")}
    return index, status, parsed, started, time.time()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run_batch(stack, broker):
    """The batch with the broker killed after a quarter of it is answered;
    returns (results, kill time, back time)."""
    results, outage = [], {}
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = [pool.submit(create, stack, i) for i in range(COUNT)]
        wait_for(lambda: sum(f.done() for f in futures) >= COUNT // 4, 120, "a quarter answered")
        # the outage starts with the signal: the API sees the connection
        # drop before the broker's process is gone (kill waits for that)
        outage["killed"] = time.time()
        broker.kill()
        print(f"broker SIGKILLed with {sum(f.done() for f in futures)} of {COUNT} answered")
        # the API while the broker is down: a create answers, and clearly
        status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
        took = time.time() - outage["killed"]
        print(f"create with the broker down: {status} {body} after {took:.1f} s")
        check(status == 503 and "Kafka" in body.get("message", ""),
              f"a create with the broker down is a 503 naming Kafka: {status} {body}")
        check(took < ANSWER_LIMIT_S, f"answered in {took:.1f} s")
        check_quick_refusals(stack)
        time.sleep(max(0, DOWN_S - (time.time() - outage["killed"])))
        broker.up()
        outage["back"] = time.time()
        print(f"broker back {outage['back'] - outage['killed']:.1f} s after the kill")
        for future in futures:
            results.append(future.result())
    return results, outage["killed"], outage["back"]


def check_quick_refusals(stack):
    """With the broker down (and seen down by the API), creates are refused
    at once: 503 {code, message naming Kafka}, Retry-After."""
    for attempt in range(3):
        started = time.time()
        status, body, headers = stack.request("POST", "/sandboxes",
                                              {"templateID": "minimal", "timeout": 60})
        took = time.time() - started
        body = body if isinstance(body, dict) else {}
        print(f"create {attempt + 1} with the broker down: {status} in {took:.2f} s")
        check(status == 503 and body.get("code") == 503 and "Kafka" in body.get("message", ""),
              f"503 in the E2B error shape naming Kafka: {status} {body}")
        check(took < REFUSE_LIMIT_S, f"refused in {took:.2f} s, under {REFUSE_LIMIT_S} s")
        check(int(headers.get("Retry-After", "0")) >= 1, f"Retry-After: {headers}")


def check_answers(results, killed, back):
    check(sorted(r[0] for r in results) == list(range(COUNT)), "one answer per request")
    hung = [(i, body) for i, status, body, _, _ in results if status is None]
    check(not hung, f"requests without an answer within {ANSWER_LIMIT_S} s: {hung}")
    for index, status, body, started, ended in results:
        check(ended - started < ANSWER_LIMIT_S, f"request {index} took {ended - started:.1f} s")
        check(status == 201 or (500 <= status <= 599 and body.get("message")),
              f"request {index}: 201 or a 5xx with a message, got {status} {body}")
    during = {}
    for _, status, body, started, ended in results:
        if ended >= killed and started <= back:
            message = re.sub(r"sandbox \w+|/sandboxes/\w+", "sandbox <id>", body.get("message", ""))
            key = f"{status} {message[:70]}" if status != 201 else "201"
            during[key] = during.get(key, 0) + 1
    check(during, "requests of the batch were in flight during the outage")
    latencies = [ended - started for _, _, _, started, ended in results]
    print("answers of the requests in flight during the outage:")
    for key, count in sorted(during.items()):
        print(f"  {count:3d} x {key}")
    print(f"create latency over the batch: p50 {percentile(latencies, 0.5):.2f} s, "
          f"p99 {percentile(latencies, 0.99):.2f} s, max {max(latencies):.2f} s")


def check_rows(stack, results):
    created = {body["sandboxID"]: i for i, status, body, _, _ in results if status == 201}
    check(len(created) == sum(1 for r in results if r[1] == 201), "no sandbox id answered twice")
    # nothing left starting: a queued create whose result was lost finishes
    wait_for(lambda: faults.state_counts(stack).get("starting", 0) == 0, 90,
             "no row left starting: " + str(faults.state_counts(stack)))
    rows = faults.rows(stack)
    for sandbox_id in created:
        check(rows.get(sandbox_id, ("missing",))[0] == "running",
              f"201 {sandbox_id} is {rows.get(sandbox_id)}")
    by_index = {}
    for line in stack.psql("SELECT coalesce(metadata->>'index', ''), id, state FROM sandboxes").splitlines():
        index, sandbox_id, state = line.split("|", 2)
        by_index.setdefault(index, []).append((sandbox_id, state, rows[sandbox_id][1]))
    for index, status, body, _, _ in results:
        mine = by_index.get(str(index), [])
        check(len(mine) <= 1, f"request {index} made {len(mine)} rows: {mine}")
        states = [state for _, state, _ in mine]
        if status == 201:
            check(states == ["running"], f"request {index} (201): rows {mine}")
        elif status == 504:  # queued, its result lost with the broker: done once it is back
            check(states == ["running"], f"request {index} (504, accepted): rows {mine}")
        elif status == 503:
            check(states in ([], ["failed"]), f"request {index} (503): rows {mine}")
    duplicates = stack.psql("SELECT count(*) FROM (SELECT request_id FROM requests "
                            "GROUP BY request_id HAVING count(*) > 1) d")
    check(duplicates == "0", f"{duplicates} request ids twice")
    running = [i for i, (state, _, _) in faults.rows(stack).items() if state == "running"]
    faults.check_host_matches(stack, running, 64)
    return len(running)


def main():
    faults.require_root()
    broker = faults.TestKafka(1)
    try:
        broker.up()
        os.environ["WARREN_KAFKA_BROKERS"] = broker.address
        # one broker: one copy of each topic, whatever the caller's cluster
        os.environ["WARREN_KAFKA_REPLICATION_FACTOR"] = "1"
        os.environ["WARREN_KAFKA_MIN_INSYNC_REPLICAS"] = "1"
        with faults.Stack("brest", capacity=64,
                          extra_env={"WARREN_CREATE_DEADLINE_MS": str(CREATE_DEADLINE_MS)}) as stack:
            stack.start()
            stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "1000")
            started = time.time()
            results, killed, back = run_batch(stack, broker)
            print(f"batch answered in {time.time() - started:.1f} s: " +
                  str({s: sum(1 for r in results if r[1] == s) for s in sorted({r[1] or 0 for r in results})}))
            check_answers(results, killed, back)
            running = check_rows(stack, results)
            # the API recovered by itself: a new create is a 201
            status, body = 0, None
            deadline = time.time() + 60
            while time.time() < deadline and status != 201:
                status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
                if status != 201:
                    time.sleep(1)
            check(status == 201, f"a create after the broker is back: {status} {body}")
            print(f"{running} sandboxes running, a new create 201 after the restart")
            stack.kill("api")
            stack.kill("worker")
            faults.check_nothing_left(stack)
            print(f"broker restart: {faults.check_count()} checks passed")
    finally:
        broker.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
