"""e2e (labels e2e, templates): custom templates through the npm e2b SDK's
Template builder against the real warren-api, Kafka, warren-worker (the
build runs its steps in jails) and PostgreSQL; then the API's own checks
(validation, 404/409, list/get/delete) and a build whose worker is
SIGKILLed mid-build ends in exactly one terminal state."""
import glob
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, Stack, check, check_count, wait_for  # noqa: E402

SDK_VERSION = os.environ.get("E2B_SDK_VERSION", "2.51.0")
SDK_DIR = os.path.join(os.environ.get("WARREN_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warren")), "npm-e2b", SDK_VERSION)


def test_sdk_template(stack, alias):
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "sdk_template.cjs")],
                         env=dict(os.environ, E2B_SDK_DIR=SDK_DIR, E2B_API_URL=stack.api_url,
                                  E2B_API_KEY=stack.api_key, E2B_DOMAIN="warren.test",
                                  WARREN_PG_URL=stack.pg_url, TEMPLATE_ALIAS=alias),
                         capture_output=True, text=True, timeout=600)
    print("\n".join(l for l in out.stdout.splitlines() if "_MS=" in l or not l.startswith(("build:", "df:"))))
    print(out.stdout[-3000:])
    check(out.returncode == 0, "sdk_template.cjs failed:\n" + out.stdout[-3000:] + out.stderr[-3000:]
          + "\n--- worker\n" + stack.log("worker")[-4000:])
    status = stack.psql(f"SELECT string_agg(status, ',') FROM template_builds WHERE template_id = '{alias}'")
    check(status == "ready,ready,ready,ready", f"build rows (cold, one step changed, unchanged, skipCache): {status}")
    failed = stack.psql(f"SELECT status || '|' || reason_step || '|' || reason FROM template_builds"
                        f" WHERE template_id = '{alias}-bad'")
    check(failed.startswith("error|1|") and "code 7" in failed, f"failed build row: {failed}")
    df = os.path.join(stack.templates_dir, alias + "-df", "rootfs")
    for rel, want in (("df", "from-dockerfile\n"), ("app/hello.txt", "hello from the build context\n"),
                      ("app/x", "1 root\n")):
        with open(os.path.join(df, rel)) as f:
            check(f.read() == want, f"Dockerfile build: /{rel}")
    bad_build = stack.psql(f"SELECT id FROM template_builds WHERE template_id = '{alias}-bad'")
    status, body, _ = stack.request("GET", f"/templates/{alias}-bad/builds/{bad_build}/status")
    check(status == 200 and body["status"] == "error" and body["reason"]["step"] == "1"
          and any("about to fail" in e["message"] for e in body["reason"]["logEntries"]),
          f"failed status with the step's last lines: {status} {body}")
    wait_for(lambda: any(e["template_id"] == alias and e["status"] == "ready"
                         for e in stack.events("warren.template.events")), 30, "a ready event")
    check(True, "ready event seen")


def test_api(stack, alias):
    status, body, _ = stack.request("POST", "/v3/templates", {"name": "Bad Name!"})
    check(status == 400 and body["code"] == 400, f"bad name -> {status} {body}")
    status, body, _ = stack.request("POST", "/v3/templates", {"name": "minimal"})
    check(status == 409, f"installed name -> {status} {body}")
    status, body, _ = stack.request("POST", "/v3/templates", {"name": alias + "-api", "cpuCount": 999})
    check(status == 400, f"cpuCount 999 -> {status} {body}")
    status, body, _ = stack.request("POST", "/v3/templates", {"name": alias + "-api"})
    check(status == 202 and body["templateID"] == alias + "-api", f"create -> {status} {body}")
    build = body["buildID"]
    path = f"/v2/templates/{alias}-api/builds/{build}"
    status, body, _ = stack.request("POST", path, {"fromImage": "not an image!", "steps": []})
    check(status == 400 and "not an image reference" in body["message"], f"bad image -> {status} {body}")
    status, body, _ = stack.request("POST", path, {"fromImage": "ubuntu:22.04", "fromImageRegistry": {
        "type": "aws", "awsAccessKeyId": "x", "awsSecretAccessKey": "y", "awsRegion": "z"}, "steps": []})
    check(status == 400 and "AWS" in body["message"], f"aws registry -> {status} {body}")
    status, body, _ = stack.request("POST", path, {"fromTemplate": "no-such-base", "steps": []})
    check(status == 400 and "no-such-base" in body["message"] and "not found" in body["message"],
          f"unknown base template -> {status} {body}")
    status, body, _ = stack.request("GET", f"/templates/{alias}-api/files/not-a-hash")
    check(status == 400, f"malformed files hash -> {status} {body}")
    status, body, _ = stack.request("POST", path, {"fromTemplate": "base", "steps": [{"type": "EXPOSE"}]})
    check(status == 400 and "EXPOSE" in body["message"], f"bad step -> {status} {body}")
    status, body, _ = stack.request("POST", path, {"fromTemplate": "base", "steps": [
        {"type": "COPY", "args": ["a", "/a"], "filesHash": "0" * 64}]})
    check(status == 400 and "not uploaded" in body["message"], f"missing upload -> {status} {body}")
    status, body, _ = stack.request("GET", f"/templates/{alias}-api/builds/{build}/status")
    check(status == 200 and body["status"] == "waiting", f"status -> {status} {body}")
    status, body, _ = stack.request("GET", f"/templates/{alias}-api/builds/{'0' * 8}-0000-4000-8000-{'0' * 12}/status")
    check(status == 404, f"unknown build -> {status} {body}")
    status, body, _ = stack.request("GET", "/templates")
    check(status == 200 and {t["templateID"] for t in body} >= {alias, alias + "-api"}, f"list -> {status} {body}")
    status, body, _ = stack.request("GET", f"/templates/{alias}")
    check(status == 200 and body["builds"][0]["status"] == "ready", f"get -> {status} {body}")
    status, body, _ = stack.request("GET", f"/templates/aliases/{alias}")
    check(status == 200 and body["templateID"] == alias, f"alias -> {status} {body}")
    status, body, _ = stack.request("GET", "/templates/aliases/nope-nope")
    check(status == 404, f"unknown alias -> {status}")
    status, _, _ = stack.request("GET", "/templates", key="e2b_" + "0" * 40)
    check(status == 401, f"bad key -> {status}")
    status, _, _ = stack.request("PUT", f"/templates/{alias}/files/{'a' * 64}/upload?team={stack.team_id}&signature=00",
                                 body=b"x")
    check(status == 403, f"unsigned upload -> {status}")
    status, _, _ = stack.request("DELETE", f"/templates/{alias}-api")
    check(status == 204, f"delete -> {status}")
    # team_template_max is 4 in this stack: alias, alias-bad and alias-df exist
    status, body, _ = stack.request("POST", "/v3/templates", {"name": alias + "-q1"})
    check(status == 202, f"third template -> {status} {body}")
    status, body, _ = stack.request("POST", "/v3/templates", {"name": alias + "-q2"})
    check(status == 403 and "maximum number of templates (4)" in body["message"], f"over quota -> {status} {body}")
    status, body, _ = stack.request("GET", "/templates")
    check(status == 200 and alias + "-q2" not in {t["templateID"] for t in body}, "over quota: nothing registered")
    # a failed build registers nothing: no link on the host, no sandbox of it
    check(not os.path.lexists(os.path.join(stack.templates_dir, alias + "-bad")), "failed build not installed")
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": alias + "-bad", "timeout": 30})
    check(status in (400, 404), f"create of a template whose only build failed -> {status} {body}")
    status, body, _ = stack.request("POST", "/v3/templates", {"name": alias})
    check(status == 202, f"a rebuild of an own template is not a new one -> {status} {body}")
    status, _, _ = stack.request("DELETE", f"/templates/{alias}-q1")
    check(status == 204, f"delete q1 -> {status}")
    status, _, _ = stack.request("GET", f"/templates/{alias}-api")
    check(status == 404, f"deleted -> {status}")


def test_worker_killed_mid_build(stack, alias):
    """A build whose worker is SIGKILLed mid-step: after a restart it is
    retried (or failed), never left building."""
    name = alias + "-kill"
    status, body, _ = stack.request("POST", "/v3/templates", {"name": name})
    check(status == 202, f"create -> {status}")
    build = body["buildID"]
    status, body, _ = stack.request("POST", f"/v2/templates/{name}/builds/{build}", {
        "fromTemplate": "minimal", "steps": [{"type": "RUN", "args": [f"sleep 4; echo {name} > /slept", "root"]},
                                             {"type": "RUN", "args": ["id -u > uid; pwd > pwd"]}]})
    check(status == 202, f"start -> {status} {body}")
    wait_for(lambda: "sleep 4" in stack.psql(
        f"SELECT string_agg(message, ' ') FROM template_build_logs WHERE build_id = '{build}'"), 60,
        "the step to start")
    stack.kill("worker", sig=9)
    stack.start_worker()
    final = wait_for(lambda: stack.psql(f"SELECT status FROM template_builds WHERE id = '{build}'")
                     in ("ready", "error") and
                     stack.psql(f"SELECT status || '|' || attempts FROM template_builds WHERE id = '{build}'"),
                     120, "the killed build to end")
    print("killed build ended:", final)
    check(final in ("ready|2", "error|3"), f"one terminal state after a retry: {final}")
    if final == "ready|2":
        # minimal's busybox: a RUN as the default user (uid 1000) in its home
        home = os.path.join(stack.templates_dir, name, "rootfs", "home", "user")
        with open(os.path.join(home, "uid")) as f:
            check(f.read() == "1000\n", "RUN as user on minimal")
        with open(os.path.join(home, "pwd")) as f:
            check(f.read() == "/home/user\n", "RUN in the default WORKDIR")
    events = wait_for(lambda: [e for e in stack.events("warren.template.events") if e["build_id"] == build],
                      30, "the build's outcome event")
    check(len({e["status"] for e in events}) == 1, f"one outcome: {events}")


def test_isolation_and_delete(stack, alias):
    """Another team cannot start the template; a deleted template leaves
    the host (the worker prunes it) and its name 404s."""
    stack.warren("admin", "team", "create", stack.tag + "b", "--tier", "pro")
    out = stack.warren("admin", "key", "create", "--team", stack.tag + "b")
    other_key = next(w for w in out.split() if w.startswith("e2b_"))
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": alias, "timeout": 30}, key=other_key)
    check(status == 404, f"other team's create -> {status} {body}")
    status, body, _ = stack.request("GET", f"/templates/{alias}", key=other_key)
    check(status == 404, f"other team's get -> {status}")
    status, body, _ = stack.request("POST", "/v3/templates", {"name": alias}, key=other_key)
    check(status == 409, f"other team takes the name -> {status} {body}")
    status, body, _ = stack.request("POST", "/v3/templates", {"name": alias + "-steal"}, key=other_key)
    check(status == 202, f"other team's own template -> {status} {body}")
    status, body, _ = stack.request("POST", f"/v2/templates/{alias}-steal/builds/{body['buildID']}",
                                    {"fromTemplate": alias, "steps": []}, key=other_key)
    check(status == 400 and "not found" in body["message"], f"building from another team's template -> {status} {body}")
    status, _, _ = stack.request("DELETE", f"/templates/{alias}")
    check(status == 204, f"delete built -> {status}")
    link = os.path.join(stack.templates_dir, alias)
    wait_for(lambda: not os.path.lexists(link), 60, "the worker to remove the deleted template")
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": alias, "timeout": 30})
    check(status == 404, f"create of a deleted template -> {status} {body}")


def main():
    if not shutil.which("node") or not os.path.isdir(SDK_DIR):
        print(f"SKIP: node or the npm e2b SDK ({SDK_DIR}) is missing")
        return
    if os.geteuid() != 0:
        print("SKIP: the jail runtime needs root")
        return
    alias = "e2e-tpl-" + str(int(time.time()))[-6:]
    test_started = time.time()
    stack_ref = []
    try:
        with Stack("tpl", with_base=True) as stack:
            stack_ref.append(stack)
            uploads = os.path.join(stack.work, "uploads")
            stack.extra_env["WARREN_TEMPLATE_UPLOADS_DIR"] = uploads
            stack.extra_env["WARREN_TEMPLATE_PRUNE_INTERVAL_MS"] = "1000"
            stack.extra_env["WARREN_TEAM_TEMPLATE_MAX"] = "4"
            stack.start()
            test_sdk_template(stack, alias)
            test_api(stack, alias)
            test_worker_killed_mid_build(stack, alias)
            test_isolation_and_delete(stack, alias)
    finally:
        cache = os.environ.get("WARREN_TEMPLATE_CACHE_DIR", os.path.expanduser("~/.cache/warren/templates"))
        for entry in glob.glob(os.path.join(cache, alias + "*")):
            shutil.rmtree(entry, ignore_errors=True)
        # the layers this run made (their keys chain from a step naming the alias)
        for entry in glob.glob(os.path.join(cache, "layers", "*")):
            if os.lstat(entry).st_mtime >= test_started - 1:
                shutil.rmtree(entry, ignore_errors=True)
        if stack_ref:
            for topic in ("warren.template.builds", "warren.template.events"):
                subprocess.run([os.path.join(BIN, "warren"), "kafka", "delete-topic", stack_ref[0].prefix + topic],
                               env=stack_ref[0].env(), capture_output=True)
    print(f"e2e_templates: {check_count()} checks passed")


if __name__ == "__main__":
    main()
