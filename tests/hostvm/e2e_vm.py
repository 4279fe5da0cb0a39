"""e2e (labels vm e2e slow hostvm): the nested test host as a SECOND WORKER
HOST running the vm runtime, served to the unchanged npm e2b SDK.

On this (outer) machine: the dev stack's PostgreSQL and Kafka, warren-api,
warren-proxy and a warren-worker of the jail runtime (tests/e2e/stack.py, a
database and topic prefix of their own). The nested host (run.sh --tap
--share) joins over a tap link (10.254.50.1/30 here, .2 inside; nothing
else is routed there): its warren-worker (runtime vm, own host id, slots
10.254.52.0/24) reaches PostgreSQL at this machine's link address (so that
address is in its never-allow set, as on a real second host) and Kafka
through tcp-forward.py (the broker advertises 127.0.0.1); this machine
routes the slot range via the link, so warren-proxy reaches the nested
slots. Placement is the create's metadata warren.runtime (docs/api.md,
"Placement"): with both hosts ready,
  1. a create asking for vm before the nested host is up answers 503;
  2. vm: the SDK creates a `base` sandbox on the nested host, runs echo and
     python3, writes and reads a file, reaches a server in the guest through
     its public URL on warren-proxy here, sees allowOut/denyOut enforced on
     two addresses of a test namespace inside the nested host, sets a 3 s
     timeout and sees it gone; the nested worker frees VMM, disk and slot;
  3. jail: the same SDK script (without the egress targets) on this host;
  4. a VMM killed with SIGKILL: the sandbox is marked failed, freed;
  5. the nested worker killed with SIGKILL and restarted: its sandbox is
     reconciled (failed, the orphan VMM stopped);
then the nested host stops cleanly. Everything (QEMU, tap, route,
forwarders, stack) is removed on exit, also on failure.
Exit 0 pass, 1 fail, 77 skip (reason printed)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from stack import Stack, SOURCE, BIN, check, check_count, free_port, wait_for  # noqa: E402

SDK_VERSION = os.environ.get("E2B_SDK_VERSION", "2.51.0")
CACHE = os.environ.get("WARREN_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warren"))
SDK_DIR = os.path.join(CACHE, "npm-e2b", SDK_VERSION)
TAP = os.environ.get("WARREN_HOSTVM_TAP", "hostvm-e2e0")
OUTER_ADDR, NESTED_ADDR, LINK_PREFIX = "10.254.50.1", "10.254.50.2", 30
NESTED_SLOTS = "10.254.52.0/24"
NESTED_TIMEOUT_S = int(os.environ.get("WARREN_HOSTVM_E2E_TIMEOUT", "900"))
EGRESS_ALLOW, EGRESS_DENY = "198.51.100.2", "198.51.100.3"  # nested-worker.sh serves both


def skip(reason):
    print("SKIP:", reason)
    sys.exit(77)


def sh(*args, check_rc=True):
    return subprocess.run(args, check=check_rc, capture_output=True, text=True)


def templates_dir():
    configured = os.environ.get("WARREN_TEMPLATES_DIR")
    if configured and os.path.exists(os.path.join(configured, "minimal", "rootfs.ext4")):
        return configured
    return os.path.join(CACHE, "test-templates")


def preflight():
    if os.geteuid() != 0:
        skip("needs root (tap, routes, namespaces)")
    if not shutil.which("qemu-system-x86_64"):
        skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    if not os.path.exists(os.path.join(SDK_DIR, "node_modules", "e2b")):
        skip(f"the npm e2b SDK is not in {SDK_DIR} (scripts/setup)")
    for binary in ("warren-worker", "warren-api", "warren-proxy", "warren-vmm", "warren"):
        if not os.access(os.path.join(BIN, binary), os.X_OK):
            skip(f"{binary} is not built in {BIN}")
    for template in ("minimal", "base"):
        if not os.path.exists(os.path.join(templates_dir(), template, "rootfs.ext4")):
            skip(f"no {template} template in {templates_dir()} (scripts/test builds it)")
    if not os.environ.get("WARREN_PG_URL") or not os.environ.get("WARREN_KAFKA_BROKERS"):
        skip("WARREN_PG_URL / WARREN_KAFKA_BROKERS unset (eval \"$(scripts/dev-stack env)\")")
    if sh("ip", "link", "show", TAP, check_rc=False).returncode == 0:
        skip(f"the link {TAP} exists already (another run of this test?)")
    built = subprocess.run([os.path.join(HERE, "build.sh")], capture_output=True, text=True)
    if built.returncode != 0:
        skip("the nested host's kernel and initramfs could not be built:\n" + built.stderr[-2000:])


def run_sdk(stack, proxy_port, label, timeout_s, **settings):
    """The SDK script against this stack; returns its steps {name: record}."""
    env = dict(os.environ, E2B_SDK_DIR=SDK_DIR, E2B_API_URL=stack.api_url, E2B_API_KEY=stack.api_key,
               E2B_DOMAIN="warren.test", E2B_SANDBOX_URL=f"http://127.0.0.1:{proxy_port}",
               CREATE_TIMEOUT_MS="300000", **settings)
    started = time.time()
    out = subprocess.run(["node", os.path.join(HERE, "sdk_vm.cjs")], env=env,
                         capture_output=True, text=True, timeout=timeout_s)
    print(f"--- SDK ({label}), {time.time() - started:.1f} s\n{out.stdout}{out.stderr}", end="")
    check(out.returncode == 0, f"the SDK script failed against the {label} worker")
    steps = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            steps[record["step"]] = record
    want = {"create", "commands.run", "files.write+read", settings.get("END", "kill")}
    if settings.get("PYTHON") == "1":
        want |= {"python3", "public-url"}
    if settings.get("EGRESS_ALLOW"):
        want.add("egress")
    if settings.get("PAUSE") == "1":
        want.add("pause-resume")
    if settings.get("SNAPSHOT") == "1":
        want.add("snapshot")
    check(set(steps) == want, f"SDK steps: {sorted(steps)} (want {sorted(want)})")
    return steps


def create_rest(stack, template, runtime):
    """POST /sandboxes asking for runtime; (status, body)."""
    status, body, _ = stack.request("POST", "/sandboxes", {
        "templateID": template, "timeout": 600, "metadata": {"warren.runtime": runtime}})
    return status, body


def sandbox_row(stack, sandbox_id):
    row = stack.psql("SELECT s.state, s.host_id, coalesce(h.runtime, ''), coalesce(s.failure_reason, '') "
                     f"FROM sandboxes s LEFT JOIN hosts h ON h.id = s.host_id WHERE s.id = '{sandbox_id}'")
    return row.split("|")


def read_share(share, name):
    try:
        with open(os.path.join(share, name)) as f:
            return f.read().strip()
    except OSError:
        return None


class Link:
    """The tap to the nested host, its slot route and the outer forwarders."""

    def __init__(self, ports):
        self.ports = ports
        self.forwarder = None

    def up(self):
        sh("ip", "tuntap", "add", "dev", TAP, "mode", "tap")
        sh("ip", "addr", "add", f"{OUTER_ADDR}/{LINK_PREFIX}", "dev", TAP)
        sh("ip", "link", "set", TAP, "up")
        # The nested slots, via the nested host; nothing else goes there.
        sh("ip", "route", "add", NESTED_SLOTS, "via", NESTED_ADDR, "dev", TAP)
        pairs = [f"{OUTER_ADDR}:{p}=127.0.0.1:{p}" for p in self.ports]
        self.forwarder = subprocess.Popen([sys.executable, os.path.join(HERE, "tcp-forward.py"), *pairs],
                                          stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.forwarder.stdout.readline()
        check(line.startswith("forwarding"), f"outer forwarder: {line!r}")

    def down(self):
        if self.forwarder and self.forwarder.poll() is None:
            self.forwarder.terminate()
            self.forwarder.wait(10)
        sh("ip", "link", "delete", TAP, check_rc=False)  # its address and route go with it


def port_of(url):
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def jail_phase(stack, proxy_port):
    """The same SDK script on the outer jail worker, both hosts ready."""
    steps = run_sdk(stack, proxy_port, "outer jail", 180, TEMPLATE="base", RUNTIME="jail", PYTHON="1")
    sandbox_id = steps["create"]["sandboxId"]
    state, host, runtime, _ = sandbox_row(stack, sandbox_id)
    check(host == stack.host_id and runtime == "jail" and state == "killed",
          f"jail sandbox row: {state} {host} {runtime}")
    return steps


def wait_freed(stack, share, nested_id, what):
    """The nested worker holds no VMM, state dir (disk) or live sandbox."""
    wait_for(lambda: read_share(share, "status") == "vmm=0 sandboxes=0", 90,
             f"the nested worker to free the VMM and state dir ({what})", interval=0.5)
    wait_for(lambda: stack.psql(f"SELECT running FROM hosts WHERE id = '{nested_id}'") == "0", 30,
             f"the nested host's running count to drop to 0 ({what})", interval=0.5)


def request_in_nested(share, name, timeout_s):
    """Asks nested-worker.sh for name (kill-vmm, crash-worker); waits for name.done."""
    with open(os.path.join(share, name), "w"):
        pass
    wait_for(lambda: read_share(share, name + ".done"), timeout_s, f"the nested host to {name}", interval=0.5)


def vm_failures(stack, share, nested_id, proxy_port):
    """A killed VMM and a crashed worker, each with a running sandbox; a
    paused sandbox kept across the crash and resumed after it."""
    status, body = create_rest(stack, "minimal", "vm")
    check(status == 201, f"create (vm, for kill-vmm): {status} {body}")
    killed_vmm = body["sandboxID"]
    request_in_nested(share, "kill-vmm", 60)
    wait_for(lambda: sandbox_row(stack, killed_vmm)[0] == "failed", 60,
             "the sandbox of the killed VMM to be marked failed", interval=0.5)
    reason = sandbox_row(stack, killed_vmm)[3]
    check(reason == "warren-vmm exited (signal 9)", f"failure reason of the killed VMM: {reason!r}")
    wait_freed(stack, share, nested_id, "killed VMM")
    print(f"killed VMM: sandbox {killed_vmm} failed ({reason}), freed")

    # a paused one beside it survives the crash (its snapshot is complete);
    # paused first, so one VMM at a time runs on the nested host's one CPU
    status, body = create_rest(stack, "minimal", "vm")
    check(status == 201, f"create (vm, paused across crash-worker): {status} {body}")
    paused = body["sandboxID"]
    status, body, _ = stack.request("POST", f"/sandboxes/{paused}/pause")
    check(status == 204, f"pause before crash-worker: {status} {body}")
    status, body = create_rest(stack, "minimal", "vm")
    check(status == 201, f"create (vm, for crash-worker): {status} {body}")
    orphaned = body["sandboxID"]
    started = time.time()
    request_in_nested(share, "crash-worker", 240)
    state, host, _, reason = sandbox_row(stack, orphaned)
    check(state == "failed" and reason == "lost: the worker restarted" and host == nested_id,
          f"the crashed worker's sandbox after restart: {state} {host} {reason!r}")
    check(sandbox_row(stack, paused)[0] == "paused", f"paused across the crash: {sandbox_row(stack, paused)}")
    print(f"crashed worker: restarted in {time.time() - started:.1f} s, sandbox {orphaned} "
          f"reconciled ({reason}), the paused sandbox {paused} kept")
    started = time.time()
    # The restarted worker gets its host topic back only once Kafka's
    # session of the killed one expires (WARREN_KAFKA_SESSION_TIMEOUT_MS):
    # a 504 then only means the resume is still queued.
    status, body, _ = stack.request("POST", f"/v2/sandboxes/{paused}/connect", {"timeout": 120})
    check((status == 201 and body.get("sandboxID") == paused) or status == 504,
          f"connect after the crash: {status} {body}")
    wait_for(lambda: sandbox_row(stack, paused)[0] == "running", 120,
             "the kept sandbox to be resumed", interval=0.5)
    address = stack.psql(f"SELECT host(slot_address) FROM sandboxes WHERE id = '{paused}'")
    request = urllib.request.Request(f"http://127.0.0.1:{proxy_port}/health",
                                     headers={"Host": f"49983-{paused}.warren.test"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        check(200 <= resp.status < 300, f"the resumed agent's /health: {resp.status}")
    print(f"resumed after the crash in {time.time() - started:.1f} s at {address}, agent answers")
    stack.request("DELETE", f"/sandboxes/{paused}")
    wait_freed(stack, share, nested_id, "worker restart")


def vm_phase(stack, proxy_port, work):
    share = os.path.join(work, "share")
    os.makedirs(share)
    nested_id = stack.tag + "-nested"
    kernel = os.environ.get("WARREN_GUEST_KERNEL") or subprocess.run(
        [os.path.join(SOURCE, "guest/kernel/build.sh")], check=True, capture_output=True, text=True).stdout.strip()
    pg_port, kafka_port = port_of(stack.base_pg), port_of(stack.brokers)
    nested_env = {
        # PostgreSQL at this machine's link address (in the nested host's
        # never-allow set, like a database on the proxy's machine); Kafka
        # through the relay, as the broker advertises 127.0.0.1.
        "WARREN_PG_URL": re.sub(r"@[^:/@]+:", f"@{OUTER_ADDR}:", stack.pg_url, count=1),
        "WARREN_KAFKA_BROKERS": stack.brokers,
        "WARREN_HOST_ID": nested_id, "WARREN_RUNTIME": "vm", "WARREN_GUEST_KERNEL": kernel,
        "WARREN_TEMPLATES_DIR": os.path.realpath(templates_dir()),
        "WARREN_STATE_DIR": "/var/lib/warren-hostvm/sandboxes",
        "WARREN_SLOT_CIDR": NESTED_SLOTS, "WARREN_SLOT_PRECREATE": "1", "WARREN_SLOT_MAX": "8",
        "WARREN_SLOT_NETNS_PREFIX": "hvslot-", "WARREN_SLOT_LINK_PREFIX": "hvs",
        "WARREN_WORKER_CAPACITY": "2", "WARREN_AGENT_TIMEOUT_MS": "240000",
        "WARREN_SANDBOX_CPU_COUNT": "1",  # the nested host has one (TCG) CPU
        # one TCG vCPU runs worker, VMM and guest: heartbeats can be late
        "WARREN_KAFKA_SESSION_TIMEOUT_MS": "30000",
        "WARREN_HOST_ADDRESS": NESTED_ADDR, "WARREN_BUILD_DIR": os.path.dirname(BIN),
    }
    command = [os.path.join(HERE, "run.sh"), "--timeout", str(NESTED_TIMEOUT_S), "--tap", TAP,
               "--share", share, "--log", os.path.join(work, "nested-console.log")]
    command += ["--", os.path.join(HERE, "nested-worker.sh"), share, f"{NESTED_ADDR}/{LINK_PREFIX}",
                OUTER_ADDR, str(kafka_port)]
    link = Link([pg_port, kafka_port])
    nested = None
    try:
        link.up()
        started = time.time()
        # run.sh hands its WARREN_* variables to the nested host: this
        # stack's settings (topic prefix, seed, group), then the nested ones.
        nested = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                  start_new_session=True, env=stack.env(**nested_env))
        # Placement before the vm host is up: a clear 503, nothing queued.
        status, body = create_rest(stack, "minimal", "vm")
        check(status == 503 and "no worker host with the vm runtime" in str(body),
              f"create asking for vm with no vm host: {status} {body}")
        try:
            wait_for(lambda: read_share(share, "ready") or nested.poll() is not None, 400,
                     "the nested worker to get ready", interval=0.5)
        except AssertionError:
            pass
        ready_uptime = read_share(share, "ready")
        check(ready_uptime is not None, "the nested worker got ready (console: nested-console.log)")
        boot_to_ready = time.time() - started
        print(f"nested host: QEMU start to worker ready {boot_to_ready:.1f} s "
              f"(nested uptime {ready_uptime} s)")
        def host_row():
            return stack.psql(f"SELECT runtime, state, address FROM hosts WHERE id = '{nested_id}'")
        try:
            wait_for(lambda: host_row().startswith("vm|ready"), 30, "the nested host's row", interval=0.5)
        except AssertionError:
            pass
        check(host_row() == f"vm|ready|{NESTED_ADDR}", f"hosts row of the nested worker: {host_row()!r}")

        steps = run_sdk(stack, proxy_port, "nested vm", 480, TEMPLATE="base", RUNTIME="vm", PYTHON="1",
                        EGRESS_ALLOW=EGRESS_ALLOW, EGRESS_DENY=EGRESS_DENY, END="timeout",
                        PAUSE="1", SNAPSHOT="1")
        sandbox_id = steps["create"]["sandboxId"]
        state, host, runtime, _ = sandbox_row(stack, sandbox_id)
        check(host == nested_id and runtime == "vm" and state == "timed_out",
              f"vm sandbox row: {state} {host} {runtime}")
        wait_freed(stack, share, nested_id, "timeout")
        print("nested worker freed the VMM, disk, state dir and slot:", read_share(share, "status"))
        # the sandboxes restored from its snapshot: their agents took the new
        # token over and reseeded the guest's random generator
        for restored in (steps["snapshot"]["restored"]["id"], steps["snapshot"]["forked"]["id"]):
            agent_log = read_share(share, f"console-{restored}.log") or ""
            check("access token replaced by the holder of the previous one" in agent_log
                  and "bytes of entropy added, the random generator reseeded" in agent_log,
                  f"restored sandbox {restored}: token handed over, generator reseeded "
                  f"(console: {agent_log[-1500:]!r})")
            clock = [line for line in agent_log.splitlines() if "clock set" in line]
            print(f"restored sandbox {restored}: {clock[0] if clock else 'clock within 1 s, not set'}")
        console = read_share(share, f"console-{sandbox_id}.log") or ""
        marks = [line.strip() for line in console.splitlines()
                 if "crng init done" in line or "Run /sbin/init" in line or "random:" in line]
        print("guest console:", "; ".join(marks) if marks else "(no console copy)")

        jail = jail_phase(stack, proxy_port)
        vm_failures(stack, share, nested_id, proxy_port)

        with open(os.path.join(share, "stop"), "w"):
            pass
        rc = nested.wait(180)
        final = read_share(share, "final")
        print(f"nested host stopped: run.sh exit {rc}, {final}")
        check(rc == 0 and final == "vmm=0 sandboxes=0 netns=0 exit=0", f"nested host end: {rc} {final}")
        return steps, jail, boot_to_ready
    finally:
        if nested and nested.poll() is None:
            nested.terminate()  # run.sh kills QEMU and removes its folder
            try:
                nested.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(nested.pid, 9)
                nested.wait()
        link.down()
        subprocess.run([os.path.join(BIN, "warren"), "kafka", "delete-topic",
                        f"{stack.prefix}warren.host.{nested_id}.commands"], env=stack.env(), capture_output=True)
        log = read_share(share, "worker.log")
        if log and sys.exc_info()[0] is not None:
            print("--- nested worker log (tail)\n" + log[-6000:])


def main():
    preflight()
    work = tempfile.mkdtemp(prefix="warren-hostvm-e2e-")
    try:
        with Stack("hvm", extra_env={"WARREN_TEMPLATES_DIR": templates_dir(),
                                     "WARREN_CREATE_DEADLINE_MS": "280000",
                                     # one TCG vCPU can starve the nested
                                     # worker's heartbeat for a while
                                     "WARREN_HOST_LOST_AFTER_S": "300",
                                     "WARREN_RUNTIME": "jail"}) as stack:
            # No template build: both workers use the cached templates.
            stack.psql(f'CREATE DATABASE "{stack.database}"', database="postgres")
            stack.warren("migrate")
            stack.warren("admin", "team", "create", stack.tag, "--tier", "pro")
            out = stack.warren("admin", "key", "create", "--team", stack.tag)
            stack.api_key = next(w for w in out.split() if w.startswith("e2b_"))
            stack.start_worker("worker-jail")
            stack.start_api()
            proxy_port = free_port()
            stack.spawn("proxy", "warren-proxy", WARREN_PROXY_LISTEN=f"127.0.0.1:{proxy_port}")
            wait_for(lambda: subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{proxy_port}"],
                                            capture_output=True).returncode == 0, 30, "warren-proxy to listen")

            vm, jail, boot_to_ready = vm_phase(stack, proxy_port, work)
            print("figures: nested host boot to worker ready {:.1f} s; SDK create end to end (base): "
                  "vm (nested, TCG) {} ms, jail (outer) {} ms; commands.run vm {} ms, jail {} ms; "
                  "public URL ready vm {} ms, jail {} ms; vm timeout to gone {} ms".format(
                      boot_to_ready, vm["create"]["ms"], jail["create"]["ms"], vm["commands.run"]["ms"],
                      jail["commands.run"]["ms"], vm["public-url"]["ms"], jail["public-url"]["ms"],
                      vm["timeout"]["ms"]))
    finally:
        if os.environ.get("WARREN_KEEP_TEST_DIR"):
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"hostvm e2e: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as err:
        print("FAIL:", err)
        sys.exit(1)
