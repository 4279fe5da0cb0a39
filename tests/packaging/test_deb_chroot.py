#!/usr/bin/env python3
"""The Debian package installs into a fresh Debian tree: debootstrap
(minbase, with the package's run-time dependencies) into a temporary
folder, `dpkg -i` inside it (chroot), then the maintainer scripts' work
is checked — the warren system user, /etc/warren and its secrets folder,
the example configuration copied once (kept across a reinstall), the
state and log folders — the installed `warren` runs there (`--version`,
`config check` of the default file, `migrate --help` finding
/usr/share/warren/migrations), and `dpkg --purge` removes the
configuration but keeps the state. The debootstrapped tree is cached as a
tarball under ~/.cache/warren/debootstrap. Skipped, with the reason,
without debootstrap/cpack or when the Debian mirror cannot be reached."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

BUILD = os.environ["WARREN_BUILD_DIR"]
SUITE = "bookworm"
MIRROR = os.environ.get("WARREN_DEBIAN_MIRROR", "http://deb.debian.org/debian")
INCLUDE = ("libpq5,librdkafka1,libjansson4,libmicrohttpd12,libcurl4,libnftables1,libnl-3-200,"
           "libnl-route-3-200,libseccomp2,libcap-ng0,liburing2,libssl3,busybox-static,nftables")
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def in_root(root, *argv):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
    return run(["chroot", root, *argv], env=env, timeout=300)


def debian_tree(root):
    """A fresh tree in root, from the cached tarball or debootstrap. False: no mirror."""
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                         "warren/debootstrap")
    key = hashlib.sha256(f"{SUITE} {MIRROR} {INCLUDE}".encode()).hexdigest()[:16]
    tarball = os.path.join(cache, f"{SUITE}-minbase-{key}.tar")
    os.makedirs(root)
    if not os.path.exists(tarball):
        result = run(["debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, root,
                      MIRROR], timeout=1500)
        if result.returncode:
            print(result.stdout[-2000:], result.stderr[-2000:])
            return False
        os.makedirs(cache, exist_ok=True)
        subprocess.run(["tar", "-C", root, "-cf", tarball + ".part", "."], check=True)
        os.rename(tarball + ".part", tarball)
        return True
    subprocess.run(["tar", "-C", root, "-xf", tarball], check=True)
    return True


def mode_owner(root, path):
    st = os.stat(root + path)
    passwd = in_root(root, "stat", "-c", "%U:%G", path).stdout.strip()
    return oct(st.st_mode & 0o7777), passwd


def main():
    for tool in ("debootstrap", "chroot", "cpack", "dpkg-deb"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            return 77
    if os.geteuid() != 0:
        print("SKIP: debootstrap and chroot need root")
        return 77
    work = tempfile.mkdtemp(prefix="warren-ship-chroot-")
    try:
        result = run(["cpack", "-G", "DEB", "-B", os.path.join(work, "deb")], cwd=BUILD,
                     timeout=600)
        debs = [f for f in os.listdir(os.path.join(work, "deb")) if f.endswith(".deb")]
        check(result.returncode == 0 and len(debs) == 1, "cpack -G DEB")
        if failures:
            return 1
        root = os.path.join(work, "root")
        if not debian_tree(root):
            print(f"SKIP: debootstrap {SUITE} from {MIRROR} failed (no mirror reachable?)")
            return 77
        shutil.copy(os.path.join(work, "deb", debs[0]), os.path.join(root, "tmp/warren.deb"))
        return test_in_root(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_in_root(root):
    result = in_root(root, "dpkg", "-i", "/tmp/warren.deb")
    check(result.returncode == 0, "dpkg -i warren.deb in a fresh Debian tree")
    if result.returncode:
        print(result.stdout[-3000:], result.stderr[-3000:])
        return 1
    check("warren: edit /etc/warren/warren.conf" in result.stderr,
          "postinst tells what to do next")
    user = in_root(root, "getent", "passwd", "warren").stdout.strip().split(":")
    check(len(user) == 7 and int(user[2]) < 1000 and user[5] == "/var/lib/warren"
          and user[6] == "/usr/sbin/nologin", f"system user warren {user}")
    check(in_root(root, "getent", "group", "warren").returncode == 0, "group warren")
    expected = {"/etc/warren": ("0o755", "root:root"),
                "/etc/warren/secrets": ("0o750", "root:warren"),
                "/etc/warren/warren.conf": ("0o640", "root:warren"),
                "/var/lib/warren": ("0o755", "root:root"),
                "/var/lib/warren/templates": ("0o755", "root:root"),
                "/var/lib/warren/sandboxes": ("0o711", "root:root"),
                "/var/log/warren": ("0o750", "root:warren")}
    for path, want in expected.items():
        got = mode_owner(root, path) if os.path.exists(root + path) else None
        check(got == want, f"{path} {want} (got {got})")
    for path in ("/usr/bin/warren-api", "/usr/bin/warren-worker", "/usr/bin/warren-proxy",
                 "/usr/libexec/warren/warren-jail-init", "/usr/share/warren/migrations",
                 "/usr/lib/systemd/system/warren-worker.service",
                 "/usr/share/doc/warren/operations.md"):
        check(os.path.exists(root + path), f"{path} installed")

    version = in_root(root, "warren", "--version")
    check(version.returncode == 0 and version.stdout.startswith("warren "),
          f"warren --version runs in the tree ({version.stdout.strip()}{version.stderr.strip()})")
    missing = in_root(root, "warren", "config", "check")
    check(missing.returncode == 1 and "secret file /etc/warren/secrets/pg_url" in missing.stdout,
          "config check of the fresh file names the missing secrets")
    for name, value in (("pg_url", "postgresql://warren:pw@db.example/warren"),
                        ("token_seed", "0123456789abcdef0123456789abcdef")):
        with open(f"{root}/etc/warren/secrets/{name}", "w") as f:
            f.write(value + "\n")
        os.chmod(f"{root}/etc/warren/secrets/{name}", 0o640)
    good = in_root(root, "warren", "config", "check")
    check(good.returncode == 0 and good.stdout == "/etc/warren/warren.conf: ok\n",
          f"config check of the default file with its secrets ({good.stdout.strip()})")
    migrate = in_root(root, "warren", "migrate", "--help")
    check("migrations in /usr/share/warren/migrations\n" in migrate.stdout,
          "warren migrate uses /usr/share/warren/migrations")

    # A reinstall (upgrade path) keeps the operator's configuration.
    with open(f"{root}/etc/warren/warren.conf", "a") as f:
        f.write("worker_capacity = 7\n")
    result = in_root(root, "dpkg", "-i", "/tmp/warren.deb")
    check(result.returncode == 0, "dpkg -i again (upgrade path)")
    with open(f"{root}/etc/warren/warren.conf") as f:
        check("worker_capacity = 7\n" in f.read(), "the edited warren.conf is kept")

    result = in_root(root, "dpkg", "--purge", "warren")
    check(result.returncode == 0, "dpkg --purge warren")
    check(not os.path.exists(f"{root}/etc/warren/warren.conf"), "purge removes warren.conf")
    check(not os.path.exists(f"{root}/usr/bin/warren"), "purge removes the binaries")
    check(os.path.isdir(f"{root}/var/lib/warren"), "purge keeps the state folder")
    check(os.path.exists(f"{root}/etc/warren/secrets/pg_url"), "purge keeps the secrets")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
