#!/usr/bin/env python3
"""The Debian package: `cpack -G DEB` builds it from the build folder (into
a temporary folder), and `dpkg-deb -I/-c` show the control fields, the
maintainer scripts and every file where docs/operations.md says. The
maintainer scripts create the warren user and folders and never migrate a
database or start a service. Skipped, with the reason, without cpack or
dpkg-deb."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

BUILD = os.environ["WARREN_BUILD_DIR"]
SOURCE = os.environ["WARREN_SOURCE_DIR"]
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def main():
    for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            return 77
    out = tempfile.mkdtemp(prefix="warren-ship-deb-")
    try:
        return test_package(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_package(out):
    result = subprocess.run(["cpack", "-G", "DEB", "-B", out], cwd=BUILD, capture_output=True,
                            text=True, timeout=600)
    debs = [f for f in os.listdir(out) if f.endswith(".deb")]
    check(result.returncode == 0 and len(debs) == 1, f"cpack -G DEB built one package {debs}")
    if result.returncode or len(debs) != 1:
        print(result.stdout[-3000:], result.stderr[-3000:])
        return 1
    deb = os.path.join(out, debs[0])
    info = subprocess.run(["dpkg-deb", "-I", deb], capture_output=True, text=True).stdout
    check(re.search(r"^ Package: warren$", info, re.M) is not None, "Package: warren")
    check(re.search(r"^ Architecture: amd64$", info, re.M) is not None, "Architecture: amd64")
    depends = re.search(r"^ Depends: (.*)$", info, re.M)
    for dependency in ("passwd", "busybox-static", "libpq5", "librdkafka1", "libc6"):
        check(depends is not None and dependency in depends.group(1), f"Depends: {dependency}")
    for script in ("postinst", "prerm", "postrm"):
        check(re.search(rf"^\s+\d+ bytes,\s+\d+ lines\s+\*\s+{script}\s", info, re.M)
              is not None, f"maintainer script {script} (executable)")

    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines() if line.strip()}
    expected = ["/usr/bin/warren", "/usr/bin/warren-api", "/usr/bin/warren-worker",
                "/usr/bin/warren-proxy", "/usr/bin/warren-vmm",
                "/usr/libexec/warren/warren-jail-init", "/usr/libexec/warren/warren-agent",
                "/usr/share/warren/guest/rootfs/build-template.sh",
                "/usr/share/warren/guest/kernel/build.sh", "/usr/share/warren/scripts/stack",
                "/usr/share/doc/warren/operations.md", "/usr/share/doc/warren/configuration.md",
                "/usr/share/doc/warren/examples/warren.conf",
                "/usr/lib/systemd/system/warren-api.service",
                "/usr/lib/systemd/system/warren-worker.service",
                "/usr/lib/systemd/system/warren-proxy.service"]
    expected += [f"/usr/share/warren/migrations/{name}"
                 for name in sorted(os.listdir(os.path.join(SOURCE, "migrations")))
                 if name.endswith(".sql")]
    for path in expected:
        check(path in files, f"package holds {path}")
    check(not any(path.startswith("/etc/") for path in files),
          "no file under /etc (postinst writes the configuration once; dpkg never replaces it)")
    check(all(line.split()[1] == "root/root" for line in listing.splitlines() if line.strip()),
          "every file owned by root")

    control = os.path.join(out, "control")
    subprocess.run(["dpkg-deb", "-e", deb, control], check=True)
    postinst = open(os.path.join(control, "postinst")).read()
    check("useradd --system" in postinst and "groupadd --system warren" in postinst,
          "postinst creates the warren system user and group")
    for folder in ("/var/lib/warren", "/var/log/warren", "/etc/warren/secrets"):
        check(folder in postinst, f"postinst makes {folder}")
    scripts = "".join(open(os.path.join(control, s)).read() for s in ("postinst", "prerm", "postrm"))
    code = "\n".join(line for line in scripts.splitlines()
                     if not line.lstrip().startswith("#") and "echo" not in line)
    check("migrate" not in code and "psql" not in code,
          "no maintainer script touches a database")
    check(not re.search(r"systemctl\s+(start|enable|restart)", code),
          "no maintainer script starts or enables a service")
    with open(os.path.join(control, "postinst")) as f:
        first = f.readline()
    check(first.startswith("#!/bin/sh"), "postinst is a POSIX shell script")
    for script in ("postinst", "prerm", "postrm"):
        result = subprocess.run(["sh", "-n", os.path.join(control, script)])
        check(result.returncode == 0, f"{script} parses (sh -n)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
