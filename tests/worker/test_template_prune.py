"""unit (labels unit, templates): `warren template prune` on a made-up
template cache: layers and pulled image trees unused for longer than
--older-than-days go, newer ones and a build's fresh leftovers stay,
--dry-run removes nothing, and a symlink in the cache is never followed."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

BIN = os.path.join(os.environ.get("WARREN_BUILD_DIR", "build"), "bin", "warren")


def make(path, age_days):
    os.makedirs(os.path.join(path, "rootfs"))
    with open(os.path.join(path, "rootfs", "f"), "w") as f:
        f.write("x")
    when = time.time() - age_days * 86400
    os.utime(path, (when, when))


def prune(cache, *args):
    out = subprocess.run([BIN, "template", "prune", *args], capture_output=True, text=True,
                         env=dict(os.environ, WARREN_TEMPLATE_CACHE_DIR=cache))
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def main():
    cache = tempfile.mkdtemp(prefix="warren-prune-")
    outside = tempfile.mkdtemp(prefix="warren-prune-outside-")
    try:
        make(os.path.join(cache, "layers", "old"), 10)
        make(os.path.join(cache, "layers", "new"), 1)
        make(os.path.join(cache, "layers", ".old.build"), 10)
        make(os.path.join(cache, "layers", ".fresh.build"), 0)
        make(os.path.join(cache, "oci", "old"), 30)
        make(os.path.join(cache, "oci", "new"), 0.5)
        make(os.path.join(cache, "keep-me-template"), 100)  # installed templates are not the cache
        os.symlink(outside, os.path.join(cache, "oci", "link"))
        os.utime(os.path.join(cache, "oci", "link"), (0, 0), follow_symlinks=False)
        with open(os.path.join(outside, "precious"), "w") as f:
            f.write("y")

        out = prune(cache, "--dry-run")
        assert "3 entries to remove" in out, out
        assert os.path.isdir(os.path.join(cache, "layers", "old")), "dry run removed something"

        out = prune(cache, "--older-than-days", "7")
        assert "3 entries removed" in out, out
        left = sorted(os.listdir(os.path.join(cache, "layers"))) + sorted(os.listdir(os.path.join(cache, "oci")))
        assert left == [".fresh.build", "new", "link", "new"], left
        assert os.path.exists(os.path.join(outside, "precious")), "a symlink was followed"
        assert os.path.isdir(os.path.join(cache, "keep-me-template"))

        out = prune(cache, "--older-than-days", "0")
        assert "2 entries removed" in out, out  # new, new (fresh leftover: under a day)
        proc = subprocess.run([BIN, "template", "prune", "--older-than-days", "-1"], capture_output=True)
        assert proc.returncode == 2, "a negative age is refused"
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)
    print("test_template_prune: ok")


if __name__ == "__main__":
    sys.exit(main())
