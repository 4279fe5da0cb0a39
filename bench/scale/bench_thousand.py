#!/usr/bin/env python3
"""bench/scale: N running `minimal` jail sandboxes on one host (default
1,000), every one answering its agent's /health. Run by hand, as root,
with the dev stack's env (not a CI test):

    eval "$(scripts/dev-stack env)"
    WARREN_BUILD_DIR=$PWD/build python3 bench/scale/bench_thousand.py [--count 1000] [--concurrency 32]

It starts its own stack (tests/e2e/stack.py), lifts the team's limits and
the worker's capacity to fit, then prints:
- the time to create them all (`warren batch create`, 201 each);
- /health of every sandbox (agent port on its slot address), and the time;
- host memory per sandbox: MemAvailable before - after, / N; the kernel's
  share (Slab, SUnreclaim, PageTables, KernelStack deltas / N); per-sandbox
  charge of its cgroup (memory.current) and the PSS of its processes
  (init + agent), from a sample;
- kernel objects: network namespaces, links, nftables tables, processes;
- `GET /v2/sandboxes` (first page) and `GET /sandboxes` (every row) p50/p99
  with N rows;
then kills them all (`warren batch kill`) and reports the time."""
import argparse
import concurrent.futures
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
from stack import BIN, Stack  # noqa: E402

AGENT_PORT = 49983


def meminfo():
    values = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, rest = line.split(":", 1)
            values[name] = int(rest.split()[0])  # kB
    return values


def percentile(values, p):
    values = sorted(values)
    rank = max(1, min(len(values), int(p / 100 * len(values) + 0.999999)))
    return values[rank - 1]


def batch(stack, *args, timeout=7200):
    out = subprocess.run([os.path.join(BIN, "warren"), "batch", *args, "--json", "--api-url", stack.api_url,
                          "--api-key", stack.api_key], env=stack.env(), capture_output=True, text=True,
                         timeout=timeout)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"warren batch failed: {out.stdout}\n{out.stderr}")
    return json.loads(lines[-1])


def health(address):
    try:
        with urllib.request.urlopen(f"http://{address}:{AGENT_PORT}/health", timeout=10) as resp:
            return 200 <= resp.status < 300
    except OSError:
        return False


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cgroup_sample(parent, ids):
    """(memory.current bytes, PSS kB of its processes, process count) per sandbox cgroup."""
    out = []
    for sandbox in ids:
        base = os.path.join("/sys/fs/cgroup", parent, sandbox)
        if not os.path.isdir(base):
            base = os.path.join("/sys/fs/cgroup/unified", parent, sandbox)
        pids = []
        for root, _, files in os.walk(base):
            if "cgroup.procs" in files:
                with open(os.path.join(root, "cgroup.procs")) as f:
                    pids += [int(p) for p in f.read().split()]
        current = 0
        try:
            with open(os.path.join(base, "memory.current")) as f:
                current = int(f.read())
        except OSError:
            memory_base = os.path.join("/sys/fs/cgroup/memory", parent, sandbox, "memory.usage_in_bytes")
            if os.path.exists(memory_base):
                with open(memory_base) as f:
                    current = int(f.read())
        out.append((current, sum(pss_kb(p) for p in pids), len(pids)))
    return out


def kernel_objects(stack):
    netns = sum(1 for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
                .stdout.splitlines() if line.startswith(stack.tag))
    links = len(subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.splitlines())
    tables = len(subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines())
    processes = len([p for p in os.listdir("/proc") if p.isdigit()])
    return {"slot netns": netns, "host links": links, "host nft tables": tables, "processes": processes}


def timed_get(stack, path, rounds):
    samples = []
    for _ in range(rounds):
        started = time.time()
        status, body, _ = stack.request("GET", path)
        samples.append((time.time() - started) * 1000)
        if status != 200:
            raise SystemExit(f"GET {path}: {status} {str(body)[:200]}")
    return samples, body


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000, help="sandboxes to run at once")
    parser.add_argument("--concurrency", type=int, default=32, help="creates in flight")
    parser.add_argument("--list-rounds", type=int, default=50, help="GETs of each list")
    parser.add_argument("--sample", type=int, default=50, help="sandboxes whose cgroup and PSS are read")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (namespaces, cgroups)")
    count = args.count
    env = {"WARREN_WORKER_CREATE_CONCURRENCY": str(args.concurrency), "WARREN_SLOT_MAX": str(count + 64),
           "WARREN_SLOT_PRECREATE": "8", "WARREN_CREATE_DEADLINE_MS": "120000"}
    print(f"load average at start: {open('/proc/loadavg').read().split()[:3]} on {os.cpu_count()} CPUs")
    with Stack("scl1k", capacity=count + 32, extra_env=env) as stack:
        stack.start()
        stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "10000")
        stack.warren("admin", "team", "set-limit", stack.tag, "concurrent_sandboxes", str(count + 100))
        time.sleep(2)
        before = meminfo()
        objects_before = kernel_objects(stack)
        created = batch(stack, "create", "--count", str(count), "--template", "minimal", "--concurrency",
                        str(args.concurrency), "--timeout", "7200", "--metadata", "phase=thousand")
        print(f"\n## {count} sandboxes: created {created['created']} of {count} in {created['elapsed_ms'] / 1000:.1f} s "
              f"({created['rate_per_s']:.1f}/s, {args.concurrency} in flight; p50 {created['p50_ms']} ms, "
              f"p99 {created['p99_ms']} ms); failures: {created['failures']}")
        time.sleep(5)  # agents settle (lazy allocations, page cache)
        after = meminfo()
        objects_after = kernel_objects(stack)
        rows = stack.psql("SELECT id, host(slot_address) FROM sandboxes WHERE state = 'running' "
                          "AND metadata->>'phase' = 'thousand'")
        running = [line.split("|") for line in rows.splitlines() if line]

        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(health, [address for _, address in running]))
        print(f"/health: {sum(answers)} of {len(running)} running sandboxes answered "
              f"in {time.time() - started:.1f} s (32 at a time)")

        n = max(1, created["created"])
        delta = {k: (before[k] - after[k]) if k == "MemAvailable" else (after[k] - before[k])
                 for k in ("MemAvailable", "AnonPages", "Cached", "Buffers", "Shmem", "Slab", "SUnreclaim",
                           "PageTables", "KernelStack", "Percpu", "VmallocUsed") if k in before}
        print("host memory per sandbox (deltas / N): " +
              ", ".join(f"{k} {v / n:.0f} kB" for k, v in delta.items()))
        sample = cgroup_sample("warren-" + stack.tag, random.sample([s for s, _ in running],
                                                                     min(args.sample, len(running))))
        if sample:
            print(f"per sandbox, {len(sample)} sampled: cgroup memory.current p50 "
                  f"{statistics.median(s[0] for s in sample) / 1024:.0f} kB, processes' PSS p50 "
                  f"{statistics.median(s[1] for s in sample):.0f} kB, {statistics.median(s[2] for s in sample):.0f} "
                  f"processes")
        print("kernel objects: " + ", ".join(f"{k} {objects_before[k]} -> {objects_after[k]}"
                                             for k in objects_before))
        worker_rss = subprocess.run(["ps", "-o", "rss=", "-p", str(stack.processes["worker"].pid)],
                                    capture_output=True, text=True).stdout.strip()
        fds = [int(fd) for fd in os.listdir(f"/proc/{stack.processes['worker'].pid}/fd")]
        print(f"warren-worker RSS {int(worker_rss or 0) / 1024:.0f} MiB, {len(fds)} descriptors "
              f"({sum(fd < 1024 for fd in fds)} below 1024)")

        v2, body = timed_get(stack, "/v2/sandboxes", args.list_rounds)
        v1, all_rows = timed_get(stack, "/sandboxes", args.list_rounds)
        print(f"GET /v2/sandboxes (first page, {len(body)} rows): p50 {percentile(v2, 50):.1f} ms, "
              f"p99 {percentile(v2, 99):.1f} ms; GET /sandboxes ({len(all_rows)} rows): p50 "
              f"{percentile(v1, 50):.1f} ms, p99 {percentile(v1, 99):.1f} ms ({args.list_rounds} each)")

        killed = batch(stack, "kill", "--metadata", "phase=thousand", "--concurrency", "16")
        print(f"killed {killed['killed']} in {killed['elapsed_ms'] / 1000:.1f} s ({killed['rate_per_s']:.1f}/s)")
    print(f"load average at the end: {open('/proc/loadavg').read().split()[:3]} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
