#!/usr/bin/env python3
"""Install smoke test: `cmake --install` into a temporary DESTDIR puts every
file where docs/operations.md says, and the installed `warren` works from
there, finding its migrations and scripts under its own prefix (not the
source tree): --version, config check (good, unknown key, malformed),
migrate --help, a broken configuration refused with status 78, `warren
status` running the installed scripts/stack. The systemd units pass
`systemd-analyze verify` (skipped, with the reason, where it is missing)."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.environ["WARREN_SOURCE_DIR"]
BUILD = os.environ["WARREN_BUILD_DIR"]
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def cache_value(name):
    with open(os.path.join(BUILD, "CMakeCache.txt")) as cache:
        for line in cache:
            if line.startswith(name + ":"):
                return line.split("=", 1)[1].strip()
    return None


def run(argv, env, **kw):
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, **kw)


def clean_env(extra=None):
    # No WARREN_* from ctest (WARREN_SOURCE_DIR would point `warren up` at
    # the source tree): what an operator's shell has.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARREN_")}
    env["WARREN_CONFIG"] = ""
    env.update(extra or {})
    return env


def main():
    for binary in ("warren", "warren-api", "warren-worker", "warren-proxy", "warren-vmm",
                   "warren-jail-init", "warren-agent"):
        if not os.access(os.path.join(BUILD, "bin", binary), os.X_OK):
            print(f"FAIL: {binary} is not built (build every target before this test)")
            return 1
    dest = tempfile.mkdtemp(prefix="warren-ship-install-")
    try:
        return test_install(dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_install(dest):
    result = run(["cmake", "--install", BUILD], clean_env({"DESTDIR": dest}))
    check(result.returncode == 0, "cmake --install into DESTDIR")
    if result.returncode:
        print(result.stdout[-2000:], result.stderr[-2000:])
        return 1
    prefix = cache_value("CMAKE_INSTALL_PREFIX")
    unitdir = os.path.join(prefix, cache_value("WARREN_SYSTEMD_UNITDIR"))
    root = dest + prefix
    bindir = os.path.join(root, "bin")
    for binary in ("warren", "warren-api", "warren-worker", "warren-proxy", "warren-vmm"):
        check(os.access(os.path.join(bindir, binary), os.X_OK), f"bin/{binary}")
    for helper in ("warren-jail-init", "warren-agent"):
        check(os.access(os.path.join(root, "libexec/warren", helper), os.X_OK),
              f"libexec/warren/{helper}")
    source_sql = sorted(os.path.basename(p) for p in glob.glob(f"{SOURCE}/migrations/*.sql"))
    installed_sql = sorted(os.path.basename(p)
                           for p in glob.glob(f"{root}/share/warren/migrations/*"))
    check(source_sql and installed_sql == source_sql,
          f"share/warren/migrations holds the {len(source_sql)} migrations and nothing else")
    for path in ("scripts/stack", "scripts/dev-stack", "guest/rootfs/build-template.sh",
                 "guest/kernel/build.sh"):
        check(os.access(os.path.join(root, "share/warren", path), os.X_OK),
              f"share/warren/{path} (executable)")
    for path in ("scripts/lib.sh", "guest/kernel/config-fragment"):
        check(os.path.isfile(os.path.join(root, "share/warren", path)), f"share/warren/{path}")
    for path in ("README.md", "configuration.md", "operations.md", "examples/warren.conf"):
        check(os.path.isfile(os.path.join(root, "share/doc/warren", path)),
              f"share/doc/warren/{path}")
    units = [os.path.join(dest + unitdir, f"warren-{n}.service") for n in ("api", "worker", "proxy")]
    for unit in units:
        check(os.path.isfile(unit), f"unit {os.path.basename(unit)} in {unitdir}")

    warren = os.path.join(bindir, "warren")
    env = clean_env()
    result = run([warren, "--version"], env)
    check(result.returncode == 0 and re.fullmatch(r"warren \d+\.\d+\.\d+\n", result.stdout),
          f"warren --version ({result.stdout.strip()})")

    # The example configuration, with its secret files made here.
    secrets = os.path.join(dest, "secrets")
    os.makedirs(secrets)
    for name, value in (("pg_url", "postgresql://warren:pw@db.example/warren"),
                        ("token_seed", "0123456789abcdef0123456789abcdef")):
        with open(os.path.join(secrets, name), "w") as f:
            f.write(value + "\n")
        os.chmod(os.path.join(secrets, name), 0o600)
    with open(os.path.join(root, "share/doc/warren/examples/warren.conf")) as f:
        example = f.read().replace("/etc/warren/secrets", secrets)
    good = os.path.join(dest, "good.conf")
    with open(good, "w") as f:
        f.write(example)
    result = run([warren, "config", "check", good], env)
    check(result.returncode == 0 and result.stdout.endswith(": ok\n"),
          "warren config check accepts the example configuration")
    bad = os.path.join(dest, "bad.conf")
    with open(bad, "w") as f:
        f.write("kafka_broker = k1:9092\nworker_capacity = lots\nno equals sign\n")
    result = run([warren, "config", "check", bad], env)
    check(result.returncode == 1, "config check: a bad file exits 1")
    check("bad.conf:1: error: unknown setting 'kafka_broker' (did you mean 'kafka_brokers'?)"
          in result.stdout, "config check names the unknown key and the nearest one")
    check("bad.conf:2: error: worker_capacity: 'lots' is not a whole number" in result.stdout,
          "config check: bad integer")
    check("bad.conf:3: error: expected 'name = value'" in result.stdout,
          "config check: malformed line")

    result = run([warren, "migrate", "--help"], env)
    migrations = os.path.realpath(os.path.join(root, "share/warren/migrations"))
    check(result.returncode == 0 and f"migrations in {migrations}\n" in result.stdout,
          "warren migrate finds the installed migrations")
    result = run([warren, "migrate", "--status"], clean_env({"WARREN_CONFIG": bad}))
    check(result.returncode == 78 and "worker_capacity" in result.stderr,
          f"a broken configuration stops warren with 78 (got {result.returncode})")
    result = run([warren, "migrate", "--status"],
                 clean_env({"WARREN_CONFIG": os.path.join(dest, "missing.conf")}))
    check(result.returncode == 78, "a missing explicit configuration file stops warren with 78")

    # `warren status` runs the install's scripts/stack with the install's
    # binaries: a stand-in script shows what it was given.
    stack = os.path.join(root, "share/warren/scripts/stack")
    with open(stack, "w") as f:
        f.write('#!/bin/bash\necho "installed stack $1 bin=$WARREN_BIN_DIR"\n')
    result = run([warren, "status"], env)
    check(result.stdout == f"installed stack status bin={os.path.realpath(bindir)}\n",
          f"warren status runs the installed scripts/stack ({result.stdout.strip()})")

    check_units(dest, prefix, units)
    return 1 if failures else 0


def check_units(dest, prefix, units):
    texts = {os.path.basename(u): open(u).read() for u in units}
    for name, text in texts.items():
        binary = name.replace(".service", "")
        check(f"ExecStart={prefix}/bin/{binary}\n" in text, f"{name}: ExecStart")
        check("Type=notify\n" in text and "WARREN_CONFIG=/etc/warren/warren.conf" in text,
              f"{name}: Type=notify, WARREN_CONFIG")
        check(("Delegate=yes\n" in text) == (binary == "warren-worker"),
              f"{name}: cgroup delegation only for the worker")
        check(("User=warren\n" in text) == (binary != "warren-worker"),
              f"{name}: runs as warren (the worker as root with a bounded set)")
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("SKIP systemd-analyze verify: systemd-analyze is not installed")
        return
    # verify wants ExecStart's binary to exist: point the units at the
    # DESTDIR copy of the install.
    folder = os.path.join(dest, "verify")
    os.makedirs(folder)
    for name, text in texts.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(text.replace(f"={prefix}/bin/", f"={dest}{prefix}/bin/"))
    result = run([analyze, "verify"] + sorted(glob.glob(f"{folder}/*.service")),
                 dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
    check(result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(),
          "systemd-analyze verify: no error, no warning" +
          (f" ({result.stderr.strip()})" if result.stderr.strip() else ""))


if __name__ == "__main__":
    sys.exit(main())
