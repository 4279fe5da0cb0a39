"""e2e (labels e2e, lifecycle, jail): POST /sandboxes/{id}/fork of jail
sandboxes through the real warren-api, Kafka, warren-worker and PostgreSQL
with the npm e2b SDK as the client (sdk_fork.cjs: Sandbox.fork count 2,
the forks' files, unknown id, count over the bound), then the REST edges:
the body's bounds, another team's sandbox, a fork over the team's
concurrency limit gets its own error while the other starts, the forks
run on the snapshot's host, a paused source stays paused, the fork's
snapshot is deleted, the answer carries the request's X-Request-Id."""
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, check, check_count  # noqa: E402
from test_snapshots import SDK_DIR, remove_trees, run_sdk_script  # noqa: E402


def test_sdk(stack):
    run_sdk_script(stack, "sdk_fork.cjs", "fork")


def fork(stack, sandbox_id, body, key=None, headers=None):
    return stack.request("POST", f"/sandboxes/{sandbox_id}/fork", body, key=key, headers=headers)


def test_bounds(stack, sandbox_id):
    for body in ({"count": 0}, {"count": 11}, {"count": "2"}, {"count": 1.5}, {"timeout": 0},
                 {"timeout": "60"}, [1]):
        status, answer, _ = fork(stack, sandbox_id, body)
        check(status == 400, f"fork {body} -> {status} {answer}")
    status, answer, _ = fork(stack, "iaaaaaaaaaaaaaaaaaaaa", {"count": 1})
    check(status == 404, f"fork of an unknown sandbox -> {status} {answer}")
    stack.warren("admin", "team", "create", stack.tag + "-other", "--tier", "pro")
    out = stack.warren("admin", "key", "create", "--team", stack.tag + "-other")
    other_key = next(w for w in out.split() if w.startswith("e2b_"))
    status, answer, _ = fork(stack, sandbox_id, {"count": 1}, key=other_key)
    check(status == 404, f"fork of another team's sandbox -> {status} {answer}")
    print("bounds: count 0/11/'2'/1.5, timeout 0/'60', not an object -> 400; unknown, other team -> 404")


def test_per_fork_limit(stack, sandbox_id):
    """One slot left under the team's concurrency limit: the first fork
    starts, the second answers its own 429; the answer is still 201."""
    active = int(stack.psql("SELECT count(*) FROM sandboxes WHERE state IN ('starting', 'running')"))
    stack.psql(f"UPDATE teams SET concurrent_sandboxes = {active + 1} WHERE id = '{stack.team_id}'")
    request_id = str(uuid.uuid4())
    status, answer, headers = fork(stack, sandbox_id, {"count": 2, "timeout": 60},
                                   headers={"X-Request-Id": request_id})
    stack.psql(f"UPDATE teams SET concurrent_sandboxes = 20 WHERE id = '{stack.team_id}'")
    check(status == 201 and len(answer) == 2, f"fork at the limit -> {status} {answer}")
    check(headers.get("X-Request-Id") == request_id, f"the request's own id: {headers}")
    started, refused = answer
    check("sandbox" in started and "error" not in started, f"the first fork starts: {started}")
    check(refused.get("error", {}).get("code") == 429 and "sandbox" not in refused,
          f"the second fork is over the limit: {refused}")
    fork_id = started["sandbox"]["sandboxID"]
    for key in ("envdAccessToken", "envdVersion", "clientID"):
        check(started["sandbox"].get(key), f"the fork's {key}: {started}")
    hosts = stack.psql("SELECT DISTINCT host_id FROM sandboxes WHERE id IN "
                       f"('{sandbox_id}', '{fork_id}')")
    check(len(hosts.splitlines()) == 1, f"the fork runs on the snapshot's host: {hosts}")
    end_at = stack.psql(f"SELECT extract(epoch FROM end_at - started_at)::int FROM sandboxes "
                        f"WHERE id = '{fork_id}'")
    check(55 <= int(end_at) <= 65, f"the fork's timeout is the body's 60 s: {end_at}")
    check(stack.psql("SELECT count(*) FROM team_templates t JOIN snapshots s ON s.id = t.id "
                     "WHERE t.deleted_at IS NULL") == "0", "the fork's snapshot is deleted")
    stack.request("DELETE", f"/sandboxes/{fork_id}")
    print("at the concurrency limit: fork 1 starts, fork 2 answers 429; same host; snapshot deleted")


def test_paused_source(stack, sandbox_id):
    status, answer, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/pause")
    check(status == 204, f"pause: {status} {answer}")
    status, answer, _ = fork(stack, sandbox_id, {})
    check(status == 201 and len(answer) == 1 and "sandbox" in answer[0],
          f"fork of a paused sandbox (count 1 by default): {status} {answer}")
    check(stack.psql(f"SELECT state FROM sandboxes WHERE id = '{sandbox_id}'") == "paused",
          "the source stays paused")
    stack.request("DELETE", f"/sandboxes/{answer[0]['sandbox']['sandboxID']}")
    print("paused source: forked, stays paused")


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups)")
        return 1
    if not os.path.isdir(os.path.join(SDK_DIR, "node_modules", "e2b")):
        print(f"SKIP: the npm e2b SDK is not installed in {SDK_DIR} (scripts/setup installs it)")
        return 77
    # the prune of deleted templates every second (a fork's snapshot is
    # installed before its row is registered: the prune must wait)
    with Stack("fork", extra_env={"WARREN_TEMPLATE_PRUNE_INTERVAL_MS": "1000"}) as stack:
        try:
            stack.start()
            test_sdk(stack)
            status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 120})
            check(status == 201, f"create: {status} {body}")
            sandbox_id = body["sandboxID"]
            test_bounds(stack, sandbox_id)
            test_per_fork_limit(stack, sandbox_id)
            test_paused_source(stack, sandbox_id)
            stack.request("DELETE", f"/sandboxes/{sandbox_id}")
        finally:
            remove_trees(stack)
    print(f"e2e fork: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
