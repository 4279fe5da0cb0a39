"""e2e (labels ship, e2e, storage): PostgreSQL over TLS with one role per
component (docs/transport-security.md). The test starts its own server
with `WARREN_PG_SECURE=1 scripts/dev-stack up postgres` (a CA and a server
certificate made with openssl, pg_hba hostssl + SCRAM only, the roles with
passwords in files) and uses the dev stack's Kafka. It checks:
  1. our client (warren migrate --status, storage's connection code) is
     refused in plaintext (sslmode=disable), with a wrong password, with
     verify-full against another CA and against a wrong host name, and
     connects with the right settings;
  2. each role is refused what it must not do (the api role cannot DROP or
     CREATE a table, read schema_migrations, change team limits or a key's
     team; the worker and proxy roles cannot read api_keys; the proxy cannot
     change sandboxes);
  3. the pipeline works with every process on its own role: create through
     warren-api, a command run in the sandbox, the sandbox reached through
     warren-proxy, kill; every one of the three connected over TLS as its
     role, and no permission error in their logs."""
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, SOURCE, Stack, check, check_count, free_port, wait_for  # noqa: E402
from test_pipeline import SDK_DIR, run_in_sandbox  # noqa: E402


def skip(reason):
    print("SKIP:", reason)
    sys.exit(77)


class SecurePostgres:
    """A throwaway PostgreSQL in secure mode, on its own port and folder."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="warren-pgsecure-")
        self.port = free_port()
        self.env = dict(os.environ, WARREN_STACK_DIR=self.dir, WARREN_PG_PORT=str(self.port),
                        WARREN_PG_SECURE="1", WARREN_KAFKA_PORT=str(free_port()))
        self.secure_dir = os.path.join(self.dir, "pg-secure")

    def __enter__(self):
        out = subprocess.run([os.path.join(SOURCE, "scripts/dev-stack"), "up", "postgres"], env=self.env,
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            self.__exit__()
            raise AssertionError("secure PostgreSQL did not start:\n" + out.stdout + out.stderr)
        return self

    def __exit__(self, *exc):
        subprocess.run([os.path.join(SOURCE, "scripts/dev-stack"), "down"], env=self.env,
                       capture_output=True, timeout=120)


def warren_status(settings):
    """`warren migrate --status` as a PostgreSQL client with these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARREN_PG", "PG"))}
    env.update(WARREN_CONFIG="", **settings)
    return subprocess.run([os.path.join(BIN, "warren"), "migrate", "--status"], env=env,
                          capture_output=True, text=True, timeout=60)


def client_refusals(pg, work):
    ca = os.path.join(pg.secure_dir, "ca.crt")
    good = {"WARREN_PG_URL": f"postgresql://warren_admin@127.0.0.1:{pg.port}/postgres",
            "WARREN_PG_PASSWORD_FILE": os.path.join(pg.secure_dir, "warren_admin.password"),
            "WARREN_PG_SSL_MODE": "verify-full", "WARREN_PG_SSL_ROOT_CERT": ca}
    out = warren_status(good)
    check(out.returncode == 0 and "pending" in out.stdout, f"verify-full as the admin connects: {out.stderr}")

    # the settings win over the same keywords in the url
    out = warren_status({**good, "WARREN_PG_URL": good["WARREN_PG_URL"] + "?sslmode=disable&password=wrong"})
    check(out.returncode == 0, f"pg_ssl_mode and pg_password override the url's: {out.stderr}")

    out = warren_status({**good, "WARREN_PG_SSL_MODE": "disable"})
    check(out.returncode != 0 and "no encryption" in out.stderr, f"plaintext refused: {out.stderr}")

    wrong = os.path.join(work, "wrong.password")
    with open(os.open(wrong, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write("not-the-password\n")
    out = warren_status({**good, "WARREN_PG_PASSWORD_FILE": wrong})
    check(out.returncode != 0 and "password authentication failed" in out.stderr,
          f"wrong password refused: {out.stderr}")

    other_ca = os.path.join(work, "other-ca.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=another CA", "-keyout", os.path.join(work, "other-ca.key"),
                    "-out", other_ca], check=True, capture_output=True)
    out = warren_status({**good, "WARREN_PG_SSL_ROOT_CERT": other_ca})
    check(out.returncode != 0 and "certificate verify failed" in out.stderr, f"another CA refused: {out.stderr}")

    # The right address under a name the certificate does not carry.
    out = warren_status({**good, "WARREN_PG_URL":
                         f"postgresql://warren_admin@wrong.example:{pg.port}/postgres?hostaddr=127.0.0.1"})
    check(out.returncode != 0 and "does not match host name" in out.stderr, f"wrong host name refused: {out.stderr}")

    out = warren_status({**good, "WARREN_PG_URL": f"postgresql://warren_api@127.0.0.1:{pg.port}/postgres"})
    check(out.returncode != 0 and "password authentication failed" in out.stderr,
          f"another role with the admin's password refused: {out.stderr}")
    print("client: plaintext, wrong password, another CA, wrong host name refused; verify-full connects")


def as_role(stack, role, sql):
    """Runs sql as warren_<role> on the stack's database: (ok, stderr)."""
    url = stack.pg_role_env(role)["WARREN_PG_URL"]
    out = subprocess.run(["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-tAc", sql], capture_output=True,
                         text=True, env=stack.psql_env(), timeout=30)
    return out.returncode == 0, out.stderr.strip()


def role_refusals(stack):
    refused = [
        ("api", "DROP TABLE sandboxes", "must be owner"),
        ("api", "CREATE TABLE warren_probe (i int)", "permission denied for schema public"),
        ("api", "SELECT count(*) FROM schema_migrations", "permission denied"),
        ("api", "UPDATE teams SET concurrent_sandboxes = 100000", "permission denied"),
        ("api", "UPDATE api_keys SET team_id = team_id", "permission denied"),
        ("api", "DELETE FROM sandbox_state_transitions", "permission denied"),
        ("worker", "SELECT count(*) FROM api_keys", "permission denied"),
        ("worker", "UPDATE rate_limits SET tat_ms = 0", "permission denied"),
        ("worker", "TRUNCATE sandboxes", "permission denied"),
        ("proxy", "SELECT count(*) FROM api_keys", "permission denied"),
        ("proxy", "SELECT count(*) FROM teams", "permission denied"),
        ("proxy", "UPDATE sandboxes SET state = state", "permission denied"),
    ]
    for role, sql, why in refused:
        ok, err = as_role(stack, role, sql)
        check(not ok and why in err, f"warren_{role} refused {sql!r}: {err}")
    for role, sql in (("api", "SELECT count(*) FROM api_keys"), ("worker", "SELECT count(*) FROM sandboxes"),
                      ("proxy", "SELECT count(*) FROM sandboxes")):
        ok, err = as_role(stack, role, sql)
        check(ok, f"warren_{role} may {sql!r}: {err}")
    print(f"roles: {len(refused)} forbidden statements refused, the allowed ones run")


def through_proxy(port, host, path):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def pipeline(stack):
    proxy_port = free_port()
    stack.spawn("proxy", "warren-proxy", WARREN_PROXY_LISTEN=f"127.0.0.1:{proxy_port}")
    wait_for(lambda: subprocess.run(["ss", "-ltn", f"sport = :{proxy_port}"], capture_output=True,
                                    text=True).stdout.count("LISTEN") > 0, 30, "warren-proxy to listen")
    status, body, _ = stack.request("POST", "/sandboxes", {"templateID": "minimal", "timeout": 120,
                                                           "envVars": {"GREETING": "over-tls"}})
    check(status == 201, f"create -> {status}: {body}\n" + stack.log("worker")[-3000:] + stack.log("api")[-3000:])
    sandbox_id = body["sandboxID"]
    address = stack.psql(f"SELECT host(slot_address) FROM sandboxes WHERE id = '{sandbox_id}'")
    output = run_in_sandbox(stack, sandbox_id, body["envdAccessToken"], body["envdVersion"], address,
                            "echo $GREETING")
    check("over-tls" in output, f"command output: {output!r}")
    line = through_proxy(proxy_port, f"49983-{sandbox_id}.warren.test", "/health")
    check(" 2" in line[:13], f"the agent through warren-proxy: {line}")

    sessions = stack.psql("SELECT a.usename || ':' || s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s"
                          f" USING (pid) WHERE a.datname = '{stack.database}' ORDER BY 1")
    for role in ("warren_api", "warren_worker", "warren_proxy"):
        check(f"{role}:true" in sessions.splitlines(), f"{role} connected over TLS: {sessions.split()}")
    check(not any(line.endswith(":false") for line in sessions.splitlines()), f"no plaintext session: {sessions}")

    status, _, _ = stack.request("DELETE", f"/sandboxes/{sandbox_id}")
    check(status == 204, f"kill -> {status}")
    state = wait_for(lambda: stack.psql(f"SELECT state FROM sandboxes WHERE id = '{sandbox_id}'")
                     in ("killed", "stopped") and stack.psql(f"SELECT state FROM sandboxes WHERE id = '{sandbox_id}'"),
                     30, "the sandbox to end")
    for name in ("api", "worker", "proxy"):
        check("permission denied" not in stack.log(name), f"no permission error in {name}'s log:\n"
              + "\n".join(l for l in stack.log(name).splitlines() if "permission denied" in l)[:2000])
    print(f"pipeline on per-component roles: create, command, proxy, kill ({state}); sessions {sessions.split()}")


def main():
    if os.geteuid() != 0:
        skip("needs root (namespaces, cgroups, the postgres user)")
    if not os.environ.get("WARREN_KAFKA_BROKERS"):
        skip("WARREN_KAFKA_BROKERS unset (scripts/dev-stack up; eval \"$(scripts/dev-stack env)\")")
    for tool in ("openssl", "psql", "node"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            skip(f"{tool} is not installed (scripts/setup)")
    with SecurePostgres() as pg, tempfile.TemporaryDirectory(prefix="warren-pgsecure-") as work:
        client_refusals(pg, work)
        with Stack("pgsec", secure_pg=(pg.secure_dir, pg.port)) as stack:
            stack.start()
            role_refusals(stack)
            pipeline(stack)
    print(f"e2e pg secure: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
