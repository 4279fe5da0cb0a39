"""e2e (labels e2e, api, jail): volumes (docs/volumes.md) through the real
warren-api, Kafka, warren-worker and PostgreSQL with the npm e2b SDK as the
client (sdk_volumes.cjs): data kept across sandboxes, one writer at a time,
delete refused while mounted, the quota, unknown volumes. Then what the
host holds: one sparse image per volume in volumes_dir, recorded as this
host's, no mount left once the sandboxes ended, and the image of a deleted
volume removed by the worker's sweep (at its restart); a worker killed
while a sandbox holds a volume: the reconcile frees it, no mount left."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, check, check_count, wait_for  # noqa: E402

SDK_VERSION = os.environ.get("E2B_SDK_VERSION", "2.51.0")
SDK_DIR = os.path.join(os.environ.get("WARREN_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warren")), "npm-e2b", SDK_VERSION)


def images(stack):
    folder = os.path.join(stack.work, "volumes")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups, loop devices)")
        return 1
    if not os.path.isdir(os.path.join(SDK_DIR, "node_modules", "e2b")):
        print(f"SKIP: the npm e2b SDK is not installed in {SDK_DIR} (scripts/setup installs it)")
        return 77
    if not os.path.exists("/dev/loop-control"):
        print("SKIP: no /dev/loop-control (volumes are loop-mounted ext4 images)")
        return 77
    with Stack("volumes", extra_env={"WARREN_VOLUME_QUOTA_COUNT": "2",
                                     "WARREN_VOLUME_SIZE_MB": "64"}) as stack:
        stack.start()
        out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "sdk_volumes.cjs")],
                             env=dict(os.environ, E2B_SDK_DIR=SDK_DIR, E2B_API_URL=stack.api_url,
                                      E2B_API_KEY=stack.api_key, E2B_DOMAIN="warren.test",
                                      WARREN_PG_URL=stack.pg_url),
                             capture_output=True, text=True, timeout=300)
        print(out.stdout.strip())
        check(out.returncode == 0, "SDK volume scenarios failed:\n" + out.stdout + out.stderr +
              "\n--- worker\n" + stack.log("worker")[-4000:] + "\n--- api\n" + stack.log("api")[-2000:])
        # The one volume left ('second') was never mounted: no image. The
        # deleted one's image is still there until the worker sweeps.
        files = images(stack)
        check(len(files) == 1 and files[0].endswith(".img"), f"one image in volumes_dir: {files}")
        image = os.path.join(stack.work, "volumes", files[0])
        size, used = os.path.getsize(image), os.stat(image).st_blocks * 512
        check(size == 64 << 20 and used < size, f"sparse 64 MiB image: {size} bytes, {used} used")
        print(f"figure: a volume image of 64 MiB holding two small files takes {used >> 10} KiB")
        with open("/proc/self/mountinfo") as f:
            check(stack.work not in f.read(), "no mount of this stack is left")
        failed = stack.psql("SELECT count(*) FROM sandboxes WHERE state = 'failed'")
        check(failed == "0", f"refused creates (409, unknown volume) made no sandbox row: {failed} failed")
        # A worker crash while a sandbox holds a volume: the restart's
        # reconcile stops the jail (its volume mount goes with it) and ends
        # the row, which frees the volume for the next sandbox.
        status, body, _ = stack.request("POST", "/volumes", {"name": "crash"})
        check(status == 201, f"volume 'crash': {status} {body}")
        crash_id = body["volumeID"]
        status, body, _ = stack.request("POST", "/sandboxes", {
            "templateID": "minimal", "timeout": 120, "volumeMounts": [{"name": "crash", "path": "/work"}]})
        check(status == 201, f"create with volume 'crash': {status} {body}")
        holder = body["sandboxID"]
        with open("/proc/self/mountinfo") as f:
            check(os.path.join(stack.state_dir, holder, "vol0") in f.read(), "the host mount of the volume")
        stack.kill("worker", signal.SIGKILL)
        stack.start_worker()
        wait_for(lambda: stack.psql(f"SELECT state FROM sandboxes WHERE id = '{holder}'") == "failed", 30,
                 "the crashed worker's sandbox to end")
        with open("/proc/self/mountinfo") as f:
            check(stack.work not in f.read(), "no mount left after the reconcile")
        wait_for(lambda: images(stack) == [crash_id + ".img"], 30, "the deleted volume's image to be swept")
        print("worker restart: the deleted volume's image was removed, the held volume's kept")
        status, body, _ = stack.request("POST", "/sandboxes", {
            "templateID": "minimal", "timeout": 120, "volumeMounts": [{"name": "crash", "path": "/work"}]})
        check(status == 201, f"the volume is free after the reconcile: {status} {body}")
        stack.request("DELETE", f"/sandboxes/{body['sandboxID']}")
        status, _, _ = stack.request("DELETE", f"/volumes/{crash_id}")
        check(status == 204, f"delete after the kill: {status}")
        print("after the crash: the volume mounted again by a new sandbox, then deleted")
    print(f"e2e volumes: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
