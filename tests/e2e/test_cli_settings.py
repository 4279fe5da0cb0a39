"""integration (labels integration, cli): the `warren` CLI finds the stack
`warren up` started through the settings file scripts/stack writes
(<WARREN_HOME>/warren.conf), with no WARREN_PG_URL exported: `warren
migrate` and `warren admin team list` work against it; without the file
the CLI says to set pg_url; an exported WARREN_PG_URL still wins over the
file. The file is written by scripts/stack's write_conf, run here on its
own against a database of the dev stack made for this test."""
import os
import shutil
import subprocess
import sys
import tempfile
import random
import string

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, SOURCE, check, check_count, require_env  # noqa: E402


def warren(home, *args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("WARREN_PG_URL", "WARREN_CONFIG")}
    clean.update(WARREN_HOME=home, **env)
    return subprocess.run([os.path.join(BIN, "warren"), *args], env=clean,
                          capture_output=True, text=True, timeout=60)


def main():
    if os.path.exists("/etc/warren/warren.conf"):
        print("SKIP: /etc/warren/warren.conf exists here (the CLI reads it before the stack's file)")
        return 77
    base = require_env("WARREN_PG_URL")
    database = "clisettings" + "".join(random.choices(string.ascii_lowercase, k=6))
    url = base.rsplit("/", 1)[0] + "/" + database
    home = tempfile.mkdtemp(prefix="warren-cli-settings-")
    subprocess.run(["psql", base, "-tAc", f'CREATE DATABASE "{database}"'], check=True, capture_output=True)
    try:
        # scripts/stack's write_conf, with this test's database as the stack's
        script = (f'source <(sed -n "/^write_conf()/,/^}}/p" {SOURCE}/scripts/stack); '
                  'write_conf')
        subprocess.run(["bash", "-c", script], check=True, env=dict(
            os.environ, CONF_FILE=os.path.join(home, "warren.conf"), WARREN_PG_URL=url,
            WARREN_KAFKA_BROKERS=os.environ.get("WARREN_KAFKA_BROKERS", "127.0.0.1:9092"),
            WARREN_TEMPLATES_DIR=os.path.join(home, "templates"),
            WARREN_STATE_DIR=os.path.join(home, "sandboxes"), API_PORT="3000", DOMAIN="warren.localhost"))
        conf = open(os.path.join(home, "warren.conf")).read()
        check(f"pg_url = {url}" in conf, f"the settings file names the stack's database:\n{conf}")
        check(oct(os.stat(os.path.join(home, "warren.conf")).st_mode & 0o777) == "0o600", "mode 0600")
        out = warren(home, "config", "check", os.path.join(home, "warren.conf"))
        check(out.returncode == 0, f"warren config check of the file: {out.stdout}{out.stderr}")

        out = warren(home, "migrate")
        check(out.returncode == 0, f"warren migrate with the stack's file: {out.stderr}")
        out = warren(home, "admin", "team", "create", "settings-team", "--tier", "pro")
        check(out.returncode == 0, f"team create: {out.stderr}")
        out = warren(home, "admin", "team", "list")
        check(out.returncode == 0 and "settings-team" in out.stdout,
              f"warren admin team list without WARREN_PG_URL: {out.stdout}{out.stderr}")
        print("with the stack's settings file: migrate, team create, team list ok")

        empty = tempfile.mkdtemp(prefix="warren-cli-nosettings-")
        out = warren(empty, "admin", "team", "list")
        shutil.rmtree(empty)
        check(out.returncode != 0 and "set pg_url (WARREN_PG_URL)" in out.stderr,
              f"no file: the CLI says what to set: {out.stderr}")
        out = warren(home, "admin", "team", "list", WARREN_PG_URL=base.rsplit("/", 1)[0] + "/nosuchdb")
        check(out.returncode != 0 and "settings-team" not in out.stdout,
              f"an exported WARREN_PG_URL wins over the file: {out.stdout}{out.stderr}")
        print("without the file: 'set pg_url'; WARREN_PG_URL exported: it wins")
    finally:
        subprocess.run(["psql", base, "-tAc", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'],
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    print(f"cli settings: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
