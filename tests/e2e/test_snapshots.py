"""e2e (labels e2e, lifecycle, jail): createSnapshot / listSnapshots of jail
sandboxes through the real warren-api, Kafka, warren-worker and PostgreSQL
with the npm e2b SDK as the client (sdk_snapshot.cjs), then the REST edges:
another team's sandbox is a 404, the team quota refuses the next snapshot
once its snapshots hold snapshot_quota_mb, and the snapshot's files are on
the worker's templates dir; a paused sandbox is snapshotted and stays paused;
the same snapshot command twice makes one snapshot; a restarted worker does
not register a snapshot that was never registered."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, check, check_count, wait_for  # noqa: E402

SDK_VERSION = os.environ.get("E2B_SDK_VERSION", "2.51.0")
SDK_DIR = os.path.join(os.environ.get("WARREN_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warren")), "npm-e2b", SDK_VERSION)


def run_sdk_script(stack, script, what):
    """Runs tests/e2e/<script> under node against the stack with the npm SDK;
    a failure shows its output and the ends of the worker's and API's logs."""
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), script)],
                         env=dict(os.environ, E2B_SDK_DIR=SDK_DIR, E2B_API_URL=stack.api_url,
                                  E2B_API_KEY=stack.api_key, E2B_DOMAIN="warren.test",
                                  WARREN_PG_URL=stack.pg_url),
                         capture_output=True, text=True, timeout=240)
    print(out.stdout.strip())
    check(out.returncode == 0, f"SDK {what} scenarios failed:\n" + out.stdout + out.stderr +
          "\n--- worker\n" + stack.log("worker")[-4000:] + "\n--- api\n" + stack.log("api")[-3000:])


def test_sdk(stack):
    run_sdk_script(stack, "sdk_snapshot.cjs", "snapshot")


def produce_command(stack, kind, sandbox_id, spec):
    """A command straight to the host topic (as a redelivery would bring it)."""
    request_id = str(uuid.uuid4())
    event = {"version": 1, "type": kind, "request_id": request_id, "team_id": stack.team_id,
             "sandbox_id": sandbox_id, "spec": spec,
             "sent_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
    subprocess.run(["kcat", "-b", stack.brokers, "-P", "-t",
                    f"{stack.prefix}warren.host.{stack.host_id}.commands", "-k", sandbox_id],
                   input=json.dumps(event), text=True, check=True, timeout=30)
    return request_id


def result_of(stack, request_id):
    return wait_for(lambda: next((e for e in stack.events() if e["request_id"] == request_id), None),
                    30, f"the result of {request_id}")


def test_rest_edges(stack):
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 60})
    check(status == 201, f"create: {status} {body}")
    sandbox_id = body["sandboxID"]
    # another team: 404, as for a sandbox that does not exist
    stack.warren("admin", "team", "create", stack.tag + "-other", "--tier", "pro")
    out = stack.warren("admin", "key", "create", "--team", stack.tag + "-other")
    other_key = next(w for w in out.split() if w.startswith("e2b_"))
    status, body, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/snapshots", {}, key=other_key)
    check(status == 404, f"snapshot of another team's sandbox -> {status} {body}")
    status, body, _ = stack.request("GET", "/snapshots", key=other_key)
    check(status == 200 and body == [], f"the other team lists nothing: {status} {body}")
    status, body, _ = stack.request("POST", "/sandboxes/iaaaaaaaaaaaaaaaaaaaa/snapshots", {})
    check(status == 404, f"snapshot of an unknown sandbox -> {status} {body}")
    status, body, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/snapshots", {"name": 7})
    check(status == 400, f"a name that is not a string -> {status} {body}")
    # a snapshot's files live on the worker as an installed template
    status, body, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/snapshots", {})
    check(status == 201 and body["snapshotID"].startswith("snap-"), f"snapshot: {status} {body}")
    snapshot_id = body["snapshotID"]
    check(os.path.isfile(os.path.join(stack.templates_dir, snapshot_id, "template.json")),
          "the snapshot is installed in the worker's templates dir")
    # a paused sandbox can be snapshotted and stays paused
    status, body, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/pause")
    check(status == 204, f"pause: {status} {body}")
    status, body, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/snapshots", {"name": "paused"})
    check(status == 201 and body["names"][1:] == ["paused"], f"snapshot of a paused sandbox: {status} {body}")
    check(stack.psql(f"SELECT state FROM sandboxes WHERE id = '{sandbox_id}'") == "paused",
          "still paused after the snapshot")
    # the same snapshot command twice (a redelivery, a retrying producer):
    # one snapshot, both answered snapshotted
    redelivered = "snap-redelivered-" + stack.tag
    spec = {"snapshot_id": redelivered, "template_id": "minimal"}
    first = result_of(stack, produce_command(stack, "snapshot", sandbox_id, spec))
    second = result_of(stack, produce_command(stack, "snapshot", sandbox_id, spec))
    check(first["type"] == "snapshotted" and second["type"] == "snapshotted" and
          second["result"]["snapshot_id"] == redelivered, f"redelivered: {first} {second}")
    check(stack.psql(f"SELECT count(*) FROM snapshots WHERE id = '{redelivered}'") == "1",
          "one snapshot for two commands")
    # the team's snapshots now hold more than the quota: the next one is refused up front
    stack.psql(f"UPDATE snapshots SET bytes = 3 * 1024 * 1024 WHERE id = '{snapshot_id}'")
    status, body, _ = stack.request("POST", f"/sandboxes/{sandbox_id}/snapshots", {})
    check(status == 403 and "quota" in body.get("message", ""), f"over the quota -> {status} {body}")
    stack.request("DELETE", f"/sandboxes/{sandbox_id}")
    print("REST: another team 404, bad name 400, paused sandbox, redelivery, quota 403")
    return snapshot_id


def test_worker_restart(stack, snapshot_id):
    """A snapshot installed on the host but never registered (its worker
    died in between) is not registered by the restarted worker (it would
    be a template of no team: every team could start it) and is pruned;
    a registered one still starts sandboxes."""
    source = os.path.realpath(os.path.join(stack.templates_dir, snapshot_id))
    orphan = "snap-orphan-" + stack.tag
    tree = os.path.join(os.path.dirname(source), orphan)
    subprocess.run(["cp", "-a", source, tree], check=True)
    with open(os.path.join(tree, "template.json")) as f:
        meta = json.load(f)
    meta["name"] = orphan
    with open(os.path.join(tree, "template.json"), "w") as f:
        json.dump(meta, f)
    os.symlink(tree, os.path.join(stack.templates_dir, orphan))
    stack.kill("worker", signal.SIGKILL)
    stack.start_worker()
    check(stack.psql(f"SELECT count(*) FROM templates WHERE id = '{orphan}'") == "0",
          "an unregistered snapshot is not registered at start")
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": orphan, "timeout": 30})
    check(status == 404, f"nobody can start the orphan: {status} {body}")
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": snapshot_id, "timeout": 30})
    check(status == 201, f"the registered snapshot starts after the restart: {status} {body}")
    stack.request("DELETE", f"/sandboxes/{body['sandboxID']}")
    print("worker restart: orphan not registered, registered snapshot starts")


def remove_trees(stack):
    """The snapshot trees live in the shared template cache: take ours out."""
    for link in glob.glob(os.path.join(stack.templates_dir, "snap-*")):
        target = os.path.realpath(link)
        if os.path.basename(target).startswith("snap-") and os.path.isdir(target):
            shutil.rmtree(target, ignore_errors=True)


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups)")
        return 1
    if not os.path.isdir(os.path.join(SDK_DIR, "node_modules", "e2b")):
        print(f"SKIP: the npm e2b SDK is not installed in {SDK_DIR} (scripts/setup installs it)")
        return 77
    # the prune of deleted templates every second: it must never take a
    # snapshot whose tree is installed but whose row is not registered yet
    with Stack("snap", extra_env={"WARREN_SNAPSHOT_QUOTA_MB": "2",
                                  "WARREN_TEMPLATE_PRUNE_INTERVAL_MS": "1000"}) as stack:
        try:
            stack.start()
            test_sdk(stack)
            snapshot_id = test_rest_edges(stack)
            test_worker_restart(stack, snapshot_id)
        finally:
            remove_trees(stack)
    print(f"e2e snapshots: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
