"""e2e (labels e2e, scale, slow): three worker hosts, each in its own
network namespace as a real host would be (its own loopback, its own slot
range, reached from the API's machine only through a link and a route),
one warren-api and one warren-proxy (docs/host-requirements.md, "Several
worker hosts"). Checks:
  1. 60 creates at once are spread over the three hosts, none above its
     capacity, every one running;
  2. a public URL to a sandbox on each host answers through the one proxy
     (busybox httpd in the sandbox); creates mounting a volume all run on
     the host holding it (handed there by whichever host took them);
  3. one host's worker SIGKILLed: its sandboxes become `failed` ("lost")
     within host_lost_after_s plus the sweep, and a batch filling the room
     left (up to 20) still completes, on the other two, a full host handing
     its creates to the other; with both full, a create gets a 503 at once;
  4. the lost host's worker restarted: it learns it was declared lost and
     stops what it still ran (nothing left behind).
Each host namespace reaches PostgreSQL and Kafka on the outer loopback
through tests/hostvm/tcp-forward.py, as the nested test host does. Every
namespace, link, route, forwarder and process is removed on exit, also on
failure. Addresses: links 10.204.N.0/30, slot ranges 10.205-207.0.0/16
(WARREN_TEST_MULTIHOST_SLOTS overrides the first two octets' base)."""
import concurrent.futures
import http.client
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, SOURCE, Stack, check, check_count, free_port, wait_for  # noqa: E402
from test_pipeline import run_in_sandbox, sandbox_row  # noqa: E402

HOSTS = 3
CAPACITY = 30
FORWARDER = os.path.join(SOURCE, "tests", "hostvm", "tcp-forward.py")
SLOT_BASE = int(os.environ.get("WARREN_TEST_MULTIHOST_SLOTS", "205"))


def in_namespace(namespace):
    """Enters only the network namespace (ip netns exec would also remount
    /sys, hiding the cgroup hierarchies the jail runtime needs)."""
    return ["nsenter", f"--net=/run/netns/{namespace}"]


def sh(*args, check_rc=True, namespace=None):
    command = (in_namespace(namespace) if namespace else []) + list(args)
    out = subprocess.run(command, capture_output=True, text=True)
    if check_rc and out.returncode != 0:
        raise AssertionError(f"{' '.join(command)}: {out.stderr.strip()}")
    return out.stdout


class Host:
    """One worker host: a namespace, a link to the outer machine, a route
    for its slot range, a forwarder to PostgreSQL and Kafka, a worker."""

    def __init__(self, stack, index):
        self.stack = stack
        self.index = index
        self.namespace = f"{stack.tag}-h{index}"
        self.outer_link = f"m{stack.tag[-6:]}h{index}a"
        self.inner_link = f"m{stack.tag[-6:]}h{index}b"
        self.outer_address = f"10.204.{index}.1"
        self.address = f"10.204.{index}.2"
        self.slots = f"10.{SLOT_BASE + index - 1}.0.0/16"
        self.host_id = f"{stack.tag}-host{index}"
        self.slot_prefix = f"{stack.tag}-s{index}-"
        self.cgroup_parent = f"warren-{stack.tag}-{index}"
        self.log_name = f"worker{index}"
        self.forwarder = None
        self.worker = None

    def up(self, pg_port, kafka_port, outer_forwarder_ports):
        sh("ip", "netns", "add", self.namespace)
        sh("ip", "link", "add", self.outer_link, "type", "veth", "peer", "name", self.inner_link)
        sh("ip", "link", "set", self.inner_link, "netns", self.namespace)
        sh("ip", "addr", "add", self.outer_address + "/30", "dev", self.outer_link)
        sh("ip", "link", "set", self.outer_link, "up")
        sh("ip", "addr", "add", self.address + "/30", "dev", self.inner_link, namespace=self.namespace)
        sh("ip", "link", "set", self.inner_link, "up", namespace=self.namespace)
        sh("ip", "link", "set", "lo", "up", namespace=self.namespace)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", namespace=self.namespace)
        sh("ip", "route", "add", self.slots, "via", self.address, "dev", self.outer_link)
        # 127.0.0.1:PORT inside -> the outer forwarder -> the outer 127.0.0.1:PORT
        # (the broker advertises 127.0.0.1, so the same port works inside).
        pairs = [f"127.0.0.1:{port}={self.outer_address}:{outer_forwarder_ports[port]}"
                 for port in (pg_port, kafka_port)]
        self.forwarder = subprocess.Popen([*in_namespace(self.namespace), sys.executable, FORWARDER,
                                           *pairs], stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.forwarder.stdout.readline()
        check(line.startswith("forwarding"), f"forwarder in {self.namespace}: {line!r}")

    def start_worker(self, wait=True, **extra_env):
        """extra_env: settings of this worker only (its Kafka user)."""
        env = self.stack.env(
            **{**self.stack.pg_role_env("worker"), **extra_env},
            WARREN_HOST_ID=self.host_id, WARREN_HOST_ADDRESS=self.address,
            WARREN_STATE_DIR=os.path.join(self.stack.work, f"sandboxes{self.index}"),
            WARREN_JAIL_CGROUP_PARENT=self.cgroup_parent,
            WARREN_SLOT_NETNS_PREFIX=self.slot_prefix,
            WARREN_SLOT_LINK_PREFIX="xyz"[self.index - 1] + self.stack.tag[-6:],
            WARREN_SLOT_CIDR=self.slots, WARREN_WORKER_CAPACITY=str(CAPACITY),
            WARREN_EGRESS_PROXY_HTTP_PORT=str(free_port()), WARREN_EGRESS_PROXY_TLS_PORT=str(free_port()))
        log = open(os.path.join(self.stack.work, self.log_name + ".log"), "ab")
        self.worker = subprocess.Popen([*in_namespace(self.namespace), os.path.join(BIN, "warren-worker")],
                                       env=env, stdout=log, stderr=log, start_new_session=True)
        self.stack.processes[self.log_name] = self.worker
        if wait:
            self.stack.wait_log(self.log_name, "ready:", 90)

    def down(self):
        self.stack.kill(self.log_name)
        if self.forwarder and self.forwarder.poll() is None:
            os.killpg(self.forwarder.pid, signal.SIGTERM)
            self.forwarder.wait(10)
        sh("ip", "route", "delete", self.slots, check_rc=False)
        sh("ip", "link", "delete", self.outer_link, check_rc=False)
        for line in sh("ip", "netns", "list", check_rc=False).splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(self.slot_prefix):
                sh("ip", "netns", "delete", name, check_rc=False)
        sh("ip", "netns", "delete", self.namespace, check_rc=False)
        subprocess.run([os.path.join(BIN, "warren"), "kafka", "delete-topic",
                        f"{self.stack.prefix}warren.host.{self.host_id}.commands"],
                       env=self.stack.env(), capture_output=True)
        # A worker killed before it could clean up leaves its sandboxes'
        # disk mounts (its restart would reconcile them): unmount them.
        state_dir = os.path.join(self.stack.work, f"sandboxes{self.index}") + "/"
        with open("/proc/self/mounts") as mounts:
            targets = [line.split()[1] for line in mounts if line.split()[1].startswith(state_dir)]
        for target in sorted(targets, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)
        for hierarchy in ("", "unified", "memory", "cpu", "pids", "cpuacct"):
            top = os.path.join("/sys/fs/cgroup", hierarchy, self.cgroup_parent)
            for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass


def create(stack, timeout=300):
    started = time.time()
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": timeout})
    if isinstance(body, dict):
        body["_seconds"] = time.time() - started
    return status, body


def latency(results):
    seconds = sorted(b["_seconds"] for s, b in results if s == 201 and isinstance(b, dict))
    if not seconds:
        return "no successful create"
    return f"p50 {seconds[len(seconds) // 2]:.2f} s, max {seconds[-1]:.2f} s"


def through_proxy(port, host, path="/"):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    connection.request("GET", path, headers={"Host": host})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def hosts_of(stack, ids):
    if not ids:
        return {}
    rows = stack.psql("SELECT host_id, count(*) FROM sandboxes WHERE id IN (" +
                      ",".join(f"'{i}'" for i in ids) + ") GROUP BY host_id")
    return {line.split("|")[0]: int(line.split("|")[1]) for line in rows.splitlines() if line}


def run(stack, hosts, proxy_port):
    # 1. 60 creates at once, spread by capacity
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: create(stack), range(60)))
    elapsed = time.time() - started
    failed = [(s, b) for s, b in results if s != 201]
    check(not failed, f"{len(failed)} of 60 creates failed, first: {failed[:1]}")
    ids = [body["sandboxID"] for _, body in results]
    check(len(set(ids)) == 60, "60 distinct sandboxes")
    spread = hosts_of(stack, ids)
    print(f"60 creates ({elapsed:.1f} s, 20 in flight; {latency(results)}) spread: " +
          ", ".join(f"{h.host_id[-5:]}={spread.get(h.host_id, 0)}" for h in hosts))
    for host in hosts:
        check(0 < spread.get(host.host_id, 0) <= CAPACITY, f"{host.host_id} holds {spread.get(host.host_id, 0)}")
    check(stack.psql("SELECT count(*) FROM sandboxes WHERE state = 'running' AND id IN (" +
                     ",".join(f"'{i}'" for i in ids) + ")") == "60", "all 60 running")

    # 2. a public URL to a sandbox on each host, through the one proxy
    by_id = {body["sandboxID"]: body for _, body in results}
    for host in hosts:
        sandbox_id = stack.psql(f"SELECT id FROM sandboxes WHERE host_id = '{host.host_id}' "
                                "AND state = 'running' ORDER BY id LIMIT 1")
        body = by_id[sandbox_id]
        address = sandbox_row(stack, sandbox_id)[2]
        check(address.startswith(host.slots.split(".0.0/")[0] + "."), f"{sandbox_id} at {address} in {host.slots}")
        run_in_sandbox(stack, sandbox_id, body["envdAccessToken"], body["envdVersion"], address,
                       f"echo {host.host_id} > /tmp/www-host && busybox httpd -p 8080 -h /tmp && echo started")
        status, page = through_proxy(proxy_port, f"8080-{sandbox_id}.warren.test", "/www-host")
        check(status == 200 and page.decode().strip() == host.host_id,
              f"public URL of a sandbox on {host.host_id}: {status} {page[:200]!r}")
    print("public URL through the one proxy: a sandbox on each of the 3 hosts answered")

    # 2b. data locality: a volume lives on the host that first mounted it;
    # every later create that mounts it is handed to that host, whichever
    # worker's partition it lands on
    status, body, _ = stack.request("POST", "/volumes", {"name": "shared"})
    check(status == 201, f"volume create: {status} {body}")
    homes = []
    for round_number in range(6):
        status, body, _ = stack.request("POST", "/sandboxes", {
            "templateID": "minimal", "timeout": 60, "volumeMounts": [{"name": "shared", "path": "/data"}]})
        check(status == 201, f"create {round_number} with the volume: {status} {body}")
        homes.append(sandbox_row(stack, body["sandboxID"])[1])
        status, _, _ = stack.request("DELETE", f"/sandboxes/{body['sandboxID']}")
        check(status == 204, f"kill {round_number}: {status}")
    check(len(set(homes)) == 1, f"creates with the volume ran on one host: {homes}")
    handed = sum(stack.log(h.log_name).count("its volume is on host") for h in hosts)
    print(f"6 creates mounting one volume: all on {homes[0][-5:]}, {handed} handed there by another host")

    # 3. one host SIGKILLed: lost within the bound, creates go on elsewhere
    lost = hosts[2]
    lost_ids = [i for i in ids if sandbox_row(stack, i)[1] == lost.host_id]
    os.killpg(lost.worker.pid, signal.SIGKILL)
    lost.worker.wait()
    killed_at = time.time()
    wait_for(lambda: all(sandbox_row(stack, i)[0] == "failed" for i in lost_ids), 40,
             "the killed host's sandboxes to be marked failed")
    lost_s = time.time() - killed_at
    reason = sandbox_row(stack, lost_ids[0])[3]
    check(reason == f"lost: host {lost.host_id} stopped heartbeating", f"reason: {reason!r}")
    print(f"host SIGKILLed: its {len(lost_ids)} sandboxes failed ('lost') {lost_s:.1f} s later "
          "(bound 3 s + 5 s sweep)")
    # the batch fills what room the other two have (at most 20)
    live = int(stack.psql("SELECT count(*) FROM sandboxes WHERE state = 'running' AND host_id IN (" +
                          ",".join(f"'{h.host_id}'" for h in hosts[:2]) + ")"))
    room = 2 * CAPACITY - live
    size = min(20, room)
    check(size >= 5, f"room for a batch on the two hosts left: {room}")
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        batch = list(pool.map(lambda _: create(stack, 60), range(size)))
    failed = [(s, b) for s, b in batch if s != 201]
    check(not failed, f"{len(failed)} of {size} creates failed after the host loss, first: {failed[:1]}")
    batch_spread = hosts_of(stack, [b["sandboxID"] for _, b in batch])
    check(lost.host_id not in batch_spread, f"nothing placed on the lost host: {batch_spread}")
    handed = sum(stack.log(h.log_name).count("create handed to host") for h in hosts[:2])
    if size == room:
        # both hosts full now: once their heartbeats (every second) say so,
        # the next create is told so at once
        time.sleep(2.5)
        before = time.time()
        status, body = create(stack, 60)
        check(status == 503 and "no worker host has room" in body.get("message", "") and
              time.time() - before < 5, f"a create with every host full: {status} {body}")
        print(f"with every host full: 503 in {time.time() - before:.2f} s: {body['message']}")
    print(f"batch of {size} after the loss: done in {time.time() - started:.1f} s ({latency(batch)}) on "
          f"{sorted(h[-5:] for h in batch_spread)}; {handed} create(s) handed on by a full host")

    # 4. the lost host comes back: it stops the sandboxes it still ran
    lost.start_worker(wait=False)
    wait_for(lambda: "this host was declared lost" in stack.log(lost.log_name), 90,
             "the restarted host to learn it was declared lost")
    state_dir = os.path.join(stack.work, f"sandboxes{lost.index}")
    wait_for(lambda: not any(os.path.exists(os.path.join(state_dir, i)) for i in lost_ids), 60,
             "the returning host to stop the sandboxes it still ran")
    print("the returning host stopped the sandboxes it still ran")


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups, routes)")
        return 1
    pg_port = int(os.environ["WARREN_PG_URL"].rsplit(":", 1)[1].split("/")[0])
    kafka_port = int(os.environ["WARREN_KAFKA_BROKERS"].split(",")[0].rsplit(":", 1)[1])
    # A create waits up to 60 s (the SDK's own request timeout is longer):
    # three workers and their 60 jails share the test machine's cores.
    settings = {"WARREN_HOST_LOST_AFTER_S": "3", "WARREN_CREATE_DEADLINE_MS": "60000"}
    with Stack("mhost", extra_env=settings) as stack:
        hosts = [Host(stack, i) for i in range(1, HOSTS + 1)]
        outer = None
        try:
            stack.start(api=False, worker=False)  # the workers create the topics
            stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "1000")
            # outer side: each link address forwards to the outer loopback
            outer_ports = {pg_port: free_port(), kafka_port: free_port()}
            pairs = [f"{h.outer_address}:{outer_ports[p]}=127.0.0.1:{p}"
                     for h in hosts for p in (pg_port, kafka_port)]
            for host in hosts:
                host.up(pg_port, kafka_port, outer_ports)
            outer = subprocess.Popen([sys.executable, FORWARDER, *pairs], stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
            check(outer.stdout.readline().startswith("forwarding"), "outer forwarder")
            for host in hosts:
                host.start_worker()
            ready = stack.psql("SELECT count(*) FROM hosts WHERE state = 'ready' AND id LIKE "
                               f"'{stack.tag}-host%'")
            check(ready == str(HOSTS), f"{ready} hosts ready")
            stack.start_api()
            proxy_port = free_port()
            stack.spawn("proxy", "warren-proxy", WARREN_PROXY_LISTEN=f"127.0.0.1:{proxy_port}")
            wait_for(lambda: subprocess.run(["ss", "-ltn", f"sport = :{proxy_port}"], capture_output=True,
                                            text=True).stdout.count("LISTEN") > 0, 30, "warren-proxy to listen")
            run(stack, hosts, proxy_port)
        except BaseException:
            for host in hosts:
                print(f"--- {host.log_name} log (tail)\n{stack.log(host.log_name)[-3000:]}")
            raise
        finally:
            for host in hosts:
                host.down()
            if outer and outer.poll() is None:
                os.killpg(outer.pid, signal.SIGTERM)
                outer.wait(10)
    print(f"multi-host: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
