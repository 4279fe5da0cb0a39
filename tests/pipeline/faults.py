"""Helpers of the pipeline fault tests (tests/pipeline/test_*.py): the e2e
Stack (tests/e2e/stack.py), `warren batch` as a client, and the checks on
what a sandbox leaves on the host (jail state dirs, cgroups, slot
namespaces), a Kafka of the test's own to stop and start. Standard
library only."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from stack import BIN, Stack, free_port as stack_free_port  # noqa: E402,F401

ACTIVE = ("starting", "running", "paused", "killing")
TERMINAL = ("running", "failed", "killed", "timed_out")

import stack  # noqa: E402


def check(condition, what):
    stack.check(condition, what)


def check_count():
    return stack.check_count()


def wait_for(predicate, timeout, what):
    return stack.wait_for(predicate, timeout, what, interval=0.2)


def require_root():
    if os.geteuid() != 0:
        print("FAIL: the pipeline fault tests need root (namespaces, cgroups)")
        sys.exit(1)


def batch_env(stack):
    return stack.env(E2B_API_KEY=stack.api_key, WARREN_API_URL=stack.api_url)


def start_batch(stack, *args):
    """`warren batch ... --json` in the background; finish with batch_result."""
    return subprocess.Popen([os.path.join(BIN, "warren"), "batch", *args, "--json"],
                            env=batch_env(stack), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def batch_result(process, timeout):
    out, err = process.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"warren batch printed no summary (rc {process.returncode}):\n{out}\n{err}")
    return json.loads(lines[-1])


def rows(stack):
    """{sandbox id: (state, failure_reason, request_id)} of the stack's database."""
    out = stack.psql("SELECT id, state, coalesce(failure_reason, ''), coalesce(request_id::text, '') "
                     "FROM sandboxes")
    result = {}
    for line in out.splitlines():
        sandbox_id, state, reason, request_id = line.split("|", 3)
        result[sandbox_id] = (state, reason, request_id)
    return result


def state_counts(stack):
    counts = {}
    for state, _, _ in rows(stack).values():
        counts[state] = counts.get(state, 0) + 1
    return counts


def host_leftovers(stack):
    """What sandboxes of this stack hold on the host: jail state dirs,
    cgroups under the stack's cgroup parent, slot namespaces."""
    state_dirs = set(os.listdir(stack.state_dir)) if os.path.isdir(stack.state_dir) else set()
    cgroups = set()
    # cgroup v2 at the root, or the hybrid layout (unified + v1 controllers)
    for hierarchy in ("", "unified", "memory", "cpu", "pids"):
        cgroup_parent = os.path.join("/sys/fs/cgroup", hierarchy, "warren-" + stack.tag)
        if os.path.isdir(cgroup_parent):
            cgroups |= {name for name in os.listdir(cgroup_parent)
                        if os.path.isdir(os.path.join(cgroup_parent, name))}
    netns = [line.split()[0] for line in
             subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
             if line.startswith(stack.tag + "-slot-")]
    return state_dirs, cgroups, netns


def check_host_matches(stack, running_ids, slot_limit):
    """Every running row has exactly its jail (state dir, cgroup); nothing
    else of this stack lives on the host; slot namespaces within the pool."""
    state_dirs, cgroups, netns = host_leftovers(stack)
    check(state_dirs == set(running_ids),
          f"jail state dirs {sorted(state_dirs - set(running_ids))} without a running row, "
          f"running rows without one: {sorted(set(running_ids) - state_dirs)}")
    check(cgroups == set(running_ids),
          f"cgroups {sorted(cgroups - set(running_ids))} without a running row, "
          f"running rows without one: {sorted(set(running_ids) - cgroups)}")
    check(len(netns) <= slot_limit, f"{len(netns)} slot namespaces, more than {slot_limit}")


def remove_cgroup_parents(*parents):
    """rmdir the (empty) cgroup parents the jails were made under."""
    for parent in parents:
        for hierarchy in ("", "unified", "memory", "cpu", "pids", "cpuacct", "cpu,cpuacct"):
            try:
                os.rmdir(os.path.join("/sys/fs/cgroup", hierarchy, parent))
            except OSError:
                pass


def check_nothing_left(stack):
    state_dirs, cgroups, netns = host_leftovers(stack)
    check(not state_dirs and not cgroups and not netns,
          f"left on the host after the worker stopped: dirs {sorted(state_dirs)}, "
          f"cgroups {sorted(cgroups)}, namespaces {netns}")
    remove_cgroup_parents("warren-" + stack.tag)


def free_port_run(length):
    """A port p with p + 1 .. p + length - 1 free too (each KRaft node has a
    broker and a controller listener)."""
    for _ in range(100):
        port = stack_free_port()
        try:
            for offset in range(1, length):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
    raise AssertionError(f"no {length} adjacent free ports")


class TestKafka:
    """One or three KRaft nodes of the test's own, from scripts/dev-stack, to
    SIGKILL and start again."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.dir = tempfile.mkdtemp(prefix=f"warren-kafka{nodes}-")
        self.port = free_port_run(2 * nodes)
        self.env = dict(os.environ, WARREN_STACK_DIR=self.dir, WARREN_KAFKA_PORT=str(self.port),
                        WARREN_KAFKA_NODES=str(nodes))
        self.address = ",".join(f"127.0.0.1:{self.port + 2 * i}" for i in range(nodes))

    def up(self):
        subprocess.run([os.path.join(stack.SOURCE, "scripts/dev-stack"), "up", "kafka"], env=self.env,
                       check=True, stdout=subprocess.DEVNULL, timeout=120 + 60 * self.nodes)

    def controller(self):
        """The node id (1..nodes) of the active controller, from the metadata."""
        out = subprocess.run(["kcat", "-b", self.address, "-L", "-m", "5"], capture_output=True,
                             text=True, timeout=30).stdout
        match = re.search(r"broker (\d+) at \S+ \(controller\)", out)
        return int(match.group(1)) if match else 1

    def kill(self, node=1):
        """SIGKILLs node (1..nodes) and waits until it is gone."""
        folder = "kafka" if self.nodes == 1 else f"kafka-{node}"
        with open(os.path.join(self.dir, folder, "pid")) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                 open(f"/proc/{pid}/stat").read().split()[2] == "Z", 10, "the broker gone")

    def down(self):
        subprocess.run([os.path.join(stack.SOURCE, "scripts/dev-stack"), "down"], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)
