"""e2e (labels e2e, templates): fromImage from a real OCI registry.
The test starts Debian's docker-registry on loopback (htpasswd auth,
plain HTTP, a throwaway config and storage in a temp dir), makes a tiny
busybox image itself (umoci), pushes it (skopeo), and the npm e2b SDK
builds `fromImage(ref, credentials).runCmd('echo ok > /marker')` and runs
it; wrong credentials and an unknown tag give failed builds with the
registry's reason, and so does the plain-HTTP registry once it is no
longer in template_registry_insecure; a device node in the image is
dropped. When the
debootstrap tree of guest/rootfs is cached, a Debian image made from it
is built and run too. The registry and its dirs are removed even on
failure."""
import glob
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, Stack, check, check_count, free_port, wait_for  # noqa: E402

SDK_VERSION = os.environ.get("E2B_SDK_VERSION", "2.51.0")
SDK_DIR = os.path.join(os.environ.get("WARREN_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warren")), "npm-e2b", SDK_VERSION)
USER, PASSWORD = "oci-tester", "s3cret-oci-pw-4711"
CACHE = os.environ.get("WARREN_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warren"))
TOOLS = ("docker-registry", "skopeo", "umoci", "htpasswd", "node")


def start_registry(work):
    """docker-registry on 127.0.0.1:<free port> with htpasswd auth; (process, address)."""
    port = free_port()
    htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True,
                              capture_output=True, text=True).stdout
    with open(os.path.join(work, "htpasswd"), "w") as f:
        f.write(htpasswd)
    os.makedirs(os.path.join(work, "data"))
    with open(os.path.join(work, "config.yml"), "w") as f:
        f.write(f"""version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {work}/data
http:
  addr: 127.0.0.1:{port}
  secret: warren-oci-test
auth:
  htpasswd:
    realm: warren-oci-test
    path: {work}/htpasswd
""")
    log = open(os.path.join(work, "registry.log"), "wb")
    process = subprocess.Popen(["docker-registry", "serve", os.path.join(work, "config.yml")],
                               stdout=log, stderr=log, start_new_session=True)
    address = f"127.0.0.1:{port}"

    def answers():
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              f"http://{address}/v2/"], capture_output=True, text=True)
        return out.stdout == "401"
    wait_for(answers, 30, "the registry's /v2/ (401 without credentials)", 0.2)
    return process, address


def push_image(work, address):
    """A busybox image made here (umoci), pushed as <address>/test/img:1."""
    layout = os.path.join(work, "layout")
    bundle = os.path.join(work, "bundle")
    subprocess.run(["umoci", "init", "--layout", layout], check=True)
    subprocess.run(["umoci", "new", "--image", layout + ":img"], check=True)
    subprocess.run(["umoci", "unpack", "--image", layout + ":img", bundle], check=True)
    root = os.path.join(bundle, "rootfs")
    for d in ("bin", "etc", "tmp", "root"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for applet in ("sh", "echo", "cat", "id", "ls", "true", "mkdir", "rm", "env", "sleep"):
        os.symlink("busybox", os.path.join(root, "bin", applet))
    os.makedirs(os.path.join(root, "dev"), exist_ok=True)
    os.mknod(os.path.join(root, "dev", "evil-mem"), 0o666 | stat.S_IFCHR, os.makedev(1, 1))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write("root:x:0:\n")
    subprocess.run(["umoci", "repack", "--image", layout + ":img", bundle], check=True)
    subprocess.run(["umoci", "config", "--image", layout + ":img", "--config.env", "FOO=from-image",
                    "--config.env", "PATH=/nope", "--config.workingdir", "/srv", "--config.user", "root"],
                   check=True)
    auth = os.path.join(work, "push-auth.json")
    import base64
    with open(os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        json.dump({"auths": {address: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}, f)
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                    "--dest-authfile", auth, "oci:" + layout + ":img", f"docker://{address}/test/img:1"],
                   check=True)
    return f"{address}/test/img:1"


def push_debian_image(work, address):
    """The cached debootstrap tree (guest/rootfs's minbase stage, a tar),
    packed with umoci and pushed as <address>/test/debian:1; None when no
    tree is cached here."""
    trees = sorted(glob.glob(os.path.join(CACHE, "debootstrap", "*-minbase-*.tar")))
    if not trees:
        print("no cached debootstrap tree: the busybox image only")
        return None
    layout, bundle = os.path.join(work, "deb-layout"), os.path.join(work, "deb-bundle")
    subprocess.run(["umoci", "init", "--layout", layout], check=True)
    subprocess.run(["umoci", "new", "--image", layout + ":img"], check=True)
    subprocess.run(["umoci", "unpack", "--image", layout + ":img", bundle], check=True)
    subprocess.run(["tar", "-xf", trees[-1], "-C", os.path.join(bundle, "rootfs")], check=True)
    subprocess.run(["umoci", "repack", "--image", layout + ":img", bundle], check=True)
    shutil.rmtree(bundle)
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                    "--dest-authfile", os.path.join(work, "push-auth.json"), "oci:" + layout + ":img",
                    f"docker://{address}/test/debian:1"], check=True)
    return f"{address}/test/debian:1"


def test_oci_template(stack, alias, image, debian_image):
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "sdk_template_oci.cjs")],
                         env=dict(os.environ, E2B_SDK_DIR=SDK_DIR, E2B_API_URL=stack.api_url,
                                  E2B_API_KEY=stack.api_key, E2B_DOMAIN="warren.test",
                                  WARREN_PG_URL=stack.pg_url, TEMPLATE_ALIAS=alias, OCI_IMAGE=image, OCI_USER=USER,
                                  OCI_PASSWORD=PASSWORD, OCI_DEBIAN_IMAGE=debian_image or ""),
                         capture_output=True, text=True, timeout=600)
    print("\n".join(l for l in out.stdout.splitlines() if "_MS=" in l))
    print(out.stdout[-4000:])
    check(out.returncode == 0 and "OCI_TEMPLATE_OK" in out.stdout,
          "sdk_template_oci.cjs failed:\n" + out.stdout[-3000:] + out.stderr[-3000:]
          + "\n--- worker\n" + stack.log("worker")[-4000:])
    rows = stack.psql("SELECT string_agg(template_id || '=' || status, ',' ORDER BY created_at)"
                      f" FROM template_builds WHERE template_id LIKE '{alias}%'")
    want = f"{alias}=ready,{alias}=ready,{alias}-badauth=error,{alias}-unknown=error"
    if debian_image:
        want += f",{alias}-deb=ready"
    check(rows == want, f"build rows: {rows}")
    # nothing half-registered: the failed builds installed nothing
    for name in (alias + "-badauth", alias + "-unknown"):
        check(not os.path.lexists(os.path.join(stack.templates_dir, name)), f"{name} not installed")
    # the credentials never reach a log or a command line, and no authfile stays
    logs = stack.log("worker") + stack.log("api")
    build_logs = stack.psql(f"SELECT coalesce(string_agg(message, ' '), '') FROM template_build_logs")
    check(PASSWORD not in logs and PASSWORD not in build_logs, "the password is in no log")
    kept = stack.psql(f"SELECT count(*) FROM template_builds WHERE spec::text LIKE '%{PASSWORD}%'")
    check(kept == "0", f"finished builds keep no password ({kept} do)")
    cache = os.environ.get("WARREN_TEMPLATE_CACHE_DIR", os.path.expanduser("~/.cache/warren/templates"))
    check(not glob.glob(os.path.join(cache, "oci", ".pull-*", "auth.json")), "no authfile left")
    check(not os.path.lexists(os.path.join(stack.templates_dir, alias, "rootfs", "dev", "evil-mem")),
          "the image's device node was dropped")
    check(os.path.isfile(os.path.join(stack.templates_dir, alias, "rootfs", "usr", "local", "lib",
                                      "warren-agent", "warren-agent.bin")), "the agent in its own folder")
    # the second build of the image found its layer in the host's blob store
    with open(stack.registry_log) as f:
        gets = sum(1 for line in f if "GET /v2/test/img/blobs/" in line)
    check(1 <= gets <= 3, f"blob downloads of test/img: {gets} (4 without the shared blob store)")
    meta = json.load(open(os.path.join(stack.templates_dir, alias, "template.json")))
    check(meta["base"] == "oci" and meta["user"] == "root", f"template.json: {meta}")
    check(meta["workdir"] == "/srv" and meta["envs"].get("FOO") == "from-image" and "PATH" not in meta["envs"],
          f"the image's config (ENV but PATH, WORKDIR) are the template's defaults: {meta}")


def test_tls_required(stack, alias, image):
    """Without template_registry_insecure, the plain-HTTP registry is
    refused (TLS verified): a failed build saying so, nothing installed."""
    stack.kill("worker")
    del stack.extra_env["WARREN_TEMPLATE_REGISTRY_INSECURE"]
    stack.start_worker()
    name = alias + "-tls"
    status, body, _ = stack.request("POST", "/v3/templates", {"name": name})
    check(status == 202, f"create -> {status} {body}")
    build = body["buildID"]
    status, body, _ = stack.request("POST", f"/v2/templates/{name}/builds/{build}", {
        "fromImage": image, "fromImageRegistry": {"type": "registry", "username": USER, "password": PASSWORD},
        "steps": [{"type": "RUN", "args": ["true"]}]})
    check(status == 202, f"start -> {status} {body}")
    final = wait_for(lambda: (lambda b: b if b[1]["status"] in ("ready", "error") else None)(
        stack.request("GET", f"/templates/{name}/builds/{build}/status")), 120, "the build to end")
    body = final[1]
    check(body["status"] == "error" and "HTTP response to HTTPS client" in body["reason"]["message"],
          f"plain HTTP without the insecure setting: {body.get('reason')}")
    check(not os.path.lexists(os.path.join(stack.templates_dir, name)), "nothing installed")


def main():
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing or not os.path.isdir(SDK_DIR):
        print(f"SKIP: missing {missing or SDK_DIR} (scripts/setup installs them)")
        sys.exit(77)
    if os.geteuid() != 0:
        print("SKIP: the jail runtime needs root")
        sys.exit(77)
    alias = "e2e-oci-" + str(int(time.time()))[-6:]
    work = tempfile.mkdtemp(prefix="warren-oci-registry-")
    registry = None
    stack_ref = []
    test_started = time.time()
    try:
        registry, address = start_registry(work)
        image = push_image(work, address)
        debian_image = push_debian_image(work, address)
        with Stack("oci") as stack:
            stack_ref.append(stack)
            stack.registry_log = os.path.join(work, "registry.log")
            stack.extra_env["WARREN_TEMPLATE_REGISTRY_INSECURE"] = address
            stack.extra_env["WARREN_TEMPLATE_UPLOADS_DIR"] = os.path.join(stack.work, "uploads")
            stack.start()
            test_oci_template(stack, alias, image, debian_image)
            test_tls_required(stack, alias, image)
    finally:
        if registry:
            registry.kill()
            registry.wait()
        shutil.rmtree(work, ignore_errors=True)
        cache = os.environ.get("WARREN_TEMPLATE_CACHE_DIR", os.path.expanduser("~/.cache/warren/templates"))
        for entry in glob.glob(os.path.join(cache, alias + "*")):
            shutil.rmtree(entry, ignore_errors=True)
        for blob in glob.glob(os.path.join(cache, "oci", "blobs", "sha256", "*")):
            if os.lstat(blob).st_mtime >= test_started - 1:
                os.unlink(blob)  # this run's blobs (another run's cost it a download at most)
        for entry in glob.glob(os.path.join(cache, "layers", "*")) + [
                e for e in glob.glob(os.path.join(cache, "oci", "*")) if os.path.basename(e) != "blobs"]:
            if os.lstat(entry).st_mtime >= test_started - 1:
                shutil.rmtree(entry, ignore_errors=True)
        if stack_ref:
            for topic in ("warren.template.builds", "warren.template.events"):
                subprocess.run([os.path.join(BIN, "warren"), "kafka", "delete-topic", stack_ref[0].prefix + topic],
                               env=stack_ref[0].env(), capture_output=True)
    print(f"e2e_templates_oci: {check_count()} checks passed")


if __name__ == "__main__":
    main()
