#!/usr/bin/env python3
"""bench/scale: two builds side by side in one run (e.g. before and after a
change), each on a stack of its own, one after the other: sequential
create latency, sustained creates with N in flight, then the CPU the N
idle sandboxes cost (their agents and the worker) over a quiet window.
Run by hand, as root, with the dev stack's env:

    eval "$(scripts/dev-stack env)"
    python3 bench/scale/bench_builds.py --builds OLD_BUILD_DIR,NEW_BUILD_DIR [--count 100] [--rounds 2]
        [--templates OLD_TEMPLATES_DIR,NEW_TEMPLATES_DIR] [--idle-after SECONDS]

Each build dir needs bin/ with warren, warren-api, warren-worker,
warren-agent (and what they call). The sandboxes run the agent of the
template they start from: --templates gives each build its own templates
dir (guest/rootfs/build-template.sh --agent BUILD/bin/warren-agent),
else both use WARREN_TEMPLATES_DIR. The idle window starts --idle-after
seconds after the last create (default 3; past 60 the agents' loopback
forwarders have gone to their idle interval). The builds alternate
(--rounds times each) so that a change of the machine's load hits both."""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
import stack as stack_module  # noqa: E402


def batch(st, *args):
    out = subprocess.run([os.path.join(stack_module.BIN, "warren"), "batch", *args, "--json", "--api-url",
                          st.api_url, "--api-key", st.api_key], env=st.env(), capture_output=True, text=True,
                         timeout=1800)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"warren batch failed: {out.stdout}\n{out.stderr}")
    return json.loads(lines[-1])


def jiffies(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def pids_named(name):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == name:
                        found.append(int(pid))
            except OSError:
                pass
    return found


def machine_busy():
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def one(build, count, inflight, latency, templates, idle_after):
    stack_module.BIN = os.path.join(build, "bin")
    env = {"WARREN_SLOT_PRECREATE": "8", "WARREN_CREATE_DEADLINE_MS": "120000"}
    if templates:
        env["WARREN_TEMPLATES_DIR"] = templates
    with stack_module.Stack("sclb", capacity=count + 32, extra_env=env) as st:
        st.start()
        st.warren("admin", "team", "set-limit", st.tag, "creation_rate_per_s", "10000")
        st.warren("admin", "team", "set-limit", st.tag, "concurrent_sandboxes", str(count + 100))
        seq = batch(st, "create", "--count", str(latency), "--template", "minimal", "--concurrency", "1",
                    "--timeout", "600", "--metadata", "phase=seq")
        batch(st, "kill", "--metadata", "phase=seq", "--concurrency", "8")
        busy0, total0 = machine_busy()
        bulk = batch(st, "create", "--count", str(count), "--template", "minimal", "--concurrency", str(inflight),
                     "--timeout", "600", "--metadata", "phase=bulk")
        busy1, total1 = machine_busy()
        time.sleep(idle_after)
        agents = [p for p in pids_named("warren-agent")
                  if os.path.exists(f"/proc/{p}/cgroup") and st.tag in open(f"/proc/{p}/cgroup").read()]
        worker = [st.processes["worker"].pid]
        a0, w0, (b0, t0) = jiffies(agents), jiffies(worker), machine_busy()
        time.sleep(10)
        a1, w1, (b1, t1) = jiffies(agents), jiffies(worker), machine_busy()
        hz = os.sysconf("SC_CLK_TCK")
        batch(st, "kill", "--metadata", "phase=bulk", "--concurrency", "8")
        return {"seq p50": seq["p50_ms"], "seq p99": seq["p99_ms"], "created": bulk["created"],
                "per s": round(bulk["rate_per_s"], 1), "p50": bulk["p50_ms"], "p99": bulk["p99_ms"],
                "busy during": f"{(busy1 - busy0) / max(1, total1 - total0):.0%}",
                "idle: agents cpu": f"{(a1 - a0) / hz / 10:.1%}", "worker cpu": f"{(w1 - w0) / hz / 10:.1%}",
                "machine": f"{(b1 - b0) / max(1, t1 - t0):.0%}", "agents": len(agents)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--builds", required=True, help="comma list of build dirs")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--inflight", type=int, default=16)
    parser.add_argument("--latency", type=int, default=20, help="sequential creates")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--templates", default="", help="comma list of templates dirs, one per build")
    parser.add_argument("--idle-after", type=float, default=3, help="seconds from the last create to the idle window")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (namespaces, cgroups)")
    builds = args.builds.split(",")
    templates = dict(zip(builds, args.templates.split(","))) if args.templates else {}
    results = []
    for round_ in range(args.rounds):
        for build in builds:
            load = open("/proc/loadavg").read().split()[0]
            row = one(build, args.count, args.inflight, args.latency, templates.get(build), args.idle_after)
            results.append((build, round_, load, row))
            print(f"{build} round {round_ + 1} (load {load}): {row}", flush=True)
    print(f"\n## {args.latency} sequential creates, then {args.count} with {args.inflight} in flight, then "
          f"10 s with the {args.count} idle, from {args.idle_after:g} s after the last create "
          f"(CPU: of one core; machine: of all {os.cpu_count()})")
    for build, round_, load, row in results:
        print(f"{os.path.basename(os.path.dirname(build.rstrip('/'))) or build}/{os.path.basename(build)} "
              f"r{round_ + 1} load {load}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
