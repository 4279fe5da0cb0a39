#!/usr/bin/env python3
"""bench/pipeline: create latency through the whole pipeline (warren-api ->
Kafka -> warren-worker -> jail runtime with the `minimal` template -> agent
/init -> PostgreSQL -> result event -> API) and sustained creates/s with one
and two workers. Run by hand, as root, with the dev stack's env:

    eval "$(scripts/dev-stack env)"
    WARREN_BUILD_DIR=$PWD/build python3 bench/pipeline/bench_pipeline.py [--latency N] [--throughput N]

The split comes from the log lines: the API's per-request line (checks +
admission, Kafka ack, result wait) and the worker's debug timing line
(queue = command sent_at -> worker picks it up, lookup, slot, runtime,
health, init, persist, publish). The throughput runs: one worker taking
one create at a time (worker_create_concurrency=1), the same worker with
its default create pool, two workers, two workers fed through Kafka. "result path" = result wait - (queue +
worker total): the result event's trip back through Kafka to the API.
Pipeline overhead = client latency - (runtime + health): everything but
starting the jail and waiting for its agent to come up."""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
from stack import BIN, Stack  # noqa: E402

API_LINE = re.compile(r"req=(\S+) POST /sandboxes -> 201 in ([\d.]+) ms .*\(checks\+admission ([\d.]+) ms, "
                      r"kafka ack ([\d.]+) ms, result wait ([\d.]+) ms\)")
WORKER_LINE = re.compile(r"sandbox (\S+): timing queue=(-?\d+) lookup=([\d.]+) slot=([\d.]+) runtime=([\d.]+) "
                         r"health=([\d.]+) init=([\d.]+) persist=([\d.]+) publish=([\d.]+)")


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    rank = max(1, min(len(values), int(p / 100 * len(values) + 0.999999)))
    return values[rank - 1]


def batch(stack, *args):
    out = subprocess.run([os.path.join(BIN, "warren"), "batch", *args, "--json"],
                         env=stack.env(E2B_API_KEY=stack.api_key, WARREN_API_URL=stack.api_url),
                         capture_output=True, text=True, timeout=900)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"warren batch failed: {out.stdout}\n{out.stderr}")
    return json.loads(lines[-1])


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def latency_phase(stack, count, worker_name="worker", label="latency"):
    result = batch(stack, "create", "--count", str(count), "--template", "minimal", "--concurrency", "1",
                   "--timeout", "600", "--metadata", "phase=" + label)
    api = {m.group(1): [float(x) for x in m.groups()[1:]] for m in API_LINE.finditer(stack.log("api"))}
    worker = {m.group(1): [float(x) for x in m.groups()[1:]]
              for m in WORKER_LINE.finditer(stack.log(worker_name))}
    columns = {name: [] for name in ("client", "api checks+admission", "kafka produce ack",
                                     "kafka command queue", "worker lookup (db)", "worker slot",
                                     "runtime start (jail)", "agent health wait", "agent /init",
                                     "persist running (db)", "publish result", "result path to API",
                                     "pipeline overhead")}
    for r in result["results"]:
        if not r["ok"] or r["request_id"] not in api or r.get("sandbox_id") not in worker:
            continue
        total, checks, ack, wait = api[r["request_id"]]
        queue, lookup, slot, runtime, health, init, persist, publish = worker[r["sandbox_id"]]
        worker_total = lookup + slot + runtime + health + init + persist + publish
        columns["client"].append(r["latency_ms"])
        columns["api checks+admission"].append(checks)
        columns["kafka produce ack"].append(ack)
        columns["kafka command queue"].append(queue)
        columns["worker lookup (db)"].append(lookup)
        columns["worker slot"].append(slot)
        columns["runtime start (jail)"].append(runtime)
        columns["agent health wait"].append(health)
        columns["agent /init"].append(init)
        columns["persist running (db)"].append(persist)
        columns["publish result"].append(publish)
        columns["result path to API"].append(max(0.0, wait - queue - worker_total))
        columns["pipeline overhead"].append(r["latency_ms"] - runtime - health)
    samples = len(columns["client"])
    print(f"\n## create latency ({label}), sequential (concurrency 1), {samples} of {count} creates matched "
          f"in the logs")
    print(f"{'step':<24} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'share':>6}")
    client_mean = statistics.mean(columns["client"]) if samples else 1
    for name, values in columns.items():
        if not values:
            continue
        share = "" if name in ("client", "pipeline overhead") else f"{statistics.mean(values) / client_mean:6.1%}"
        print(f"{name:<24} {percentile(values, 50):8.1f} {percentile(values, 99):8.1f} "
              f"{statistics.mean(values):8.1f} {share:>6}")
    if samples:
        print(f"pipeline overhead p50 {percentile(columns['pipeline overhead'], 50):.1f} ms "
              f"(goal < 50 ms): {'met' if percentile(columns['pipeline overhead'], 50) < 50 else 'NOT met'}")
    batch(stack, "kill", "--metadata", "phase=" + label, "--concurrency", "8")
    return columns


def wait_warm_full(stack, name, want, timeout=300):
    """Until the worker's last "warm pool: minimal ready N/want" has N = want."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = re.findall(r"warm pool: minimal ready (\d+)/", stack.log(name))
        if found and int(found[-1]) == want:
            return
        time.sleep(0.5)
    raise SystemExit(f"{name}: the warm pool did not fill to {want}")


def machine_busy():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def throughput_phase(stack, label, count, concurrency, workers, via_kafka=False):
    before = {name: cpu_seconds(stack.processes[name].pid) for name in workers + ["api"]}
    busy_before, total_before = machine_busy()
    args = ["create", "--count", str(count), "--template", "minimal", "--concurrency", str(concurrency),
            "--timeout", "600", "--metadata", "phase=" + label]
    if via_kafka:
        args += ["--via-kafka", "--team", stack.tag]
    result = batch(stack, *args)
    elapsed = result["elapsed_ms"] / 1000
    cpu = {name: (cpu_seconds(stack.processes[name].pid) - before[name]) / elapsed for name in before}
    busy_after, total_after = machine_busy()
    cpu["machine"] = (busy_after - busy_before) / max(1, total_after - total_before)
    hosts = stack.psql("SELECT host_id, count(*) FROM sandboxes WHERE metadata->>'phase' = '" + label +
                       "' GROUP BY host_id ORDER BY host_id").replace("\n", ", ")
    row = (label, result["created"], count, result["rate_per_s"], result["p50_ms"], result["p99_ms"],
           " ".join(f"{k}={v:.0%}" for k, v in cpu.items()), hosts)
    kill = batch(stack, "kill", "--metadata", "phase=" + label, "--concurrency", "8")
    return row, kill


def warm_served(stack, name):
    """How many creates the worker `name` has served from its warm pool so far."""
    return len(re.findall(r"sandbox \S+: running \(.*, warm\)", stack.log(name)))


def print_rows(title, rows):
    print(f"\n## {title}")
    print(f"{'run':<16} {'created':>9} {'per s':>6} {'p50 ms':>7} {'p99 ms':>7}  cpu (processes: of one core; machine: of all)   hosts")
    for label, created, count, rate, p50, p99, cpu, hosts in rows:
        print(f"{label:<16} {created:>4}/{count:<4} {rate:6.1f} {p50:7d} {p99:7d}  {cpu:<40} {hosts}")


def inflight_runs(stack, args, inflight):
    """Sustained creates with each number in flight, cold then warm (a pool
    of max(--warm, --throughput), full before each run): the same worker
    settings, one after the other in one run."""
    rows = []
    stack.kill("worker")
    env = {"WARREN_WORKER_CREATE_CONCURRENCY": str(max(inflight))}
    stack.spawn("worker-cold", "warren-worker", **env)
    stack.wait_log("worker-cold", "assigned", 60)
    for count in inflight:
        row, _ = throughput_phase(stack, f"cold-{count}", args.throughput, count, ["worker-cold"])
        rows.append(row)
    stack.kill("worker-cold")
    pool = max(args.warm, args.throughput)
    stack.spawn("worker-warm", "warren-worker", WARREN_WARM_POOL=f"minimal:{pool}", **env)
    # A pool can be full before the group has given the worker its
    # partitions: the first creates would wait in Kafka for the join.
    stack.wait_log("worker-warm", "assigned", 60)
    for count in inflight:
        wait_warm_full(stack, "worker-warm", pool, timeout=900)
        served = warm_served(stack, "worker-warm")
        row = throughput_phase(stack, f"warm-{count}", args.throughput, count, ["worker-warm"])[0]
        row = row[:-1] + (f"{warm_served(stack, 'worker-warm') - served} served warm",)
        rows.append(row)
    wait_warm_full(stack, "worker-warm", pool, timeout=900)
    latency_phase(stack, args.latency, "worker-warm", "warm-latency")
    stack.kill("worker-warm")
    print_rows(f"sustained creates, {args.throughput} per run, in flight {','.join(map(str, inflight))}, "
               f"create concurrency {max(inflight)}, cold then warm pool {pool}", rows)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=int, default=40, help="sequential creates for the latency split")
    parser.add_argument("--throughput", type=int, default=60, help="creates per throughput run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warm", type=int, default=32, help="warm pool size for the warm runs (0: none)")
    parser.add_argument("--inflight", default="",
                        help="comma list (e.g. 16,100): only the cold and warm sustained runs with that many "
                             "creates in flight, and the warm latency (instead of the serial/two-worker runs)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (namespaces, cgroups)")
    with Stack("bench", capacity=500, extra_env={"WARREN_LOG_LEVEL": "debug", "WARREN_SLOT_PRECREATE": "8"}) as stack:
        stack.start()
        stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "10000")
        stack.warren("admin", "team", "set-limit", stack.tag, "concurrent_sandboxes", "1000")
        batch(stack, "create", "--count", "3", "--template", "minimal", "--metadata", "phase=warmup")
        batch(stack, "kill", "--metadata", "phase=warmup")
        latency_phase(stack, args.latency)
        if args.inflight:
            inflight_runs(stack, args, [int(x) for x in args.inflight.split(",")])
            print(f"load average now: {open('/proc/loadavg').read().split()[:3]} on {os.cpu_count()} CPUs")
            return 0
        rows = []
        # The same worker taking one create at a time (the setting
        # worker_create_concurrency=1: how every worker ran before the
        # create pool), then the default, in the same run.
        stack.kill("worker")
        stack.spawn("worker-serial", "warren-worker", WARREN_WORKER_CREATE_CONCURRENCY="1")
        stack.wait_log("worker-serial", "ready:", 60)
        stack.wait_log("worker-serial", "assigned", 30)
        row, _ = throughput_phase(stack, "one-serial", args.throughput, args.concurrency, ["worker-serial"])
        rows.append(row)
        stack.kill("worker-serial")
        stack.start_worker("worker-pool")  # a log of its own: its own "ready:"
        stack.wait_log("worker-pool", "assigned", 30)
        row, kill = throughput_phase(stack, "one-worker", args.throughput, args.concurrency, ["worker-pool"])
        rows.append(row)
        if args.warm:
            # The same worker with a warm pool of minimal sandboxes: the
            # sequential latency (each create claims one; the pool refills
            # between creates), then the sustained run (the pool drains,
            # then creates are cold while it refills).
            stack.kill("worker-pool")
            stack.spawn("worker-warm", "warren-worker", WARREN_WARM_POOL=f"minimal:{args.warm}")
            stack.wait_log("worker-warm", "assigned", 60)
            wait_warm_full(stack, "worker-warm", args.warm)
            latency_phase(stack, args.latency, "worker-warm", "warm-latency")
            wait_warm_full(stack, "worker-warm", args.warm)
            row, _ = throughput_phase(stack, "one-warm", args.throughput, args.concurrency, ["worker-warm"])
            rows.append(row)
            stack.kill("worker-warm")
            stack.spawn("worker-pool2", "warren-worker")
            stack.wait_log("worker-pool2", "assigned", 60)
            for name in ("worker-pool",):
                stack.processes[name] = stack.processes.pop("worker-pool2")
        # a second worker: another host id in the same group, its own slots,
        # state dir and cgroup parent (it reaps what it finds in its own)
        second = stack.spawn_second_worker("10.214.0.0/16")
        try:
            stack.wait_log("worker2", "ready:", 60)
            stack.wait_log("worker2", "assigned", 30)
            time.sleep(3)  # the first worker's share of the rebalance
            row, _ = throughput_phase(stack, "two-workers", args.throughput, args.concurrency,
                                      ["worker-pool", "worker2"])
            rows.append(row)
            row, _ = throughput_phase(stack, "two-via-kafka", args.throughput, args.concurrency,
                                      ["worker-pool", "worker2"], via_kafka=True)
            rows.append(row)
        finally:
            stack.kill("worker2")
            stack.kill("worker-pool")
            for parent in ("warren-" + stack.tag, "warren-" + stack.tag + "-2"):
                for hierarchy in ("", "unified", "memory", "cpu", "pids", "cpuacct", "cpu,cpuacct"):
                    try:
                        os.rmdir(os.path.join("/sys/fs/cgroup", hierarchy, parent))
                    except OSError:
                        pass
            subprocess.run([os.path.join(BIN, "warren"), "kafka", "delete-topic",
                            stack.prefix + f"warren.host.{second}.commands"], env=stack.env(), capture_output=True)
        print(f"\n## sustained creates (concurrency {args.concurrency}, {args.throughput} per run), "
              f"then batch kill ({kill['rate_per_s']:.1f} kills/s one worker)")
        print(f"{'run':<14} {'created':>9} {'per s':>6} {'p50 ms':>7} {'p99 ms':>7}  cpu (processes: of one core; machine: of all)   hosts")
        for label, created, count, rate, p50, p99, cpu, hosts in rows:
            print(f"{label:<14} {created:>4}/{count:<4} {rate:6.1f} {p50:7d} {p99:7d}  {cpu:<40} {hosts}")
    print(f"load average now: {open('/proc/loadavg').read().split()[:3]} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
