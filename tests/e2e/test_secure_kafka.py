"""e2e (labels ship, e2e, slow): warren over an authenticated, encrypted
Kafka and PostgreSQL. The test starts its own broker in the dev stack's secure mode
(WARREN_KAFKA_SECURE=1 scripts/dev-stack up kafka: only a SASL_SSL client
listener, SCRAM-SHA-512, a CA and certificate made with openssl, ACLs
enforced) and gives each component its own user and ACLs (`dev-stack
grant`; the table: docs/deploy-kafka.md), and its own PostgreSQL in the
dev stack's secure mode (WARREN_PG_SECURE=1: TLS only, verify-full, a
login role per component with only its grants: docs/transport-security.md).
Two worker hosts run in network
namespaces as in test_multi_host (each reaches the broker through a
forwarder; the broker's certificate names 127.0.0.1, which is what every
client connects to). Checks:
  1. creates spread over the two hosts, a public URL through the proxy
     and kills all work, every component authenticated as its own Kafka
     user and its own PostgreSQL role, over TLS (pg_stat_ssl);
  2. a client with a wrong password is refused (kcat and `warren kafka`);
  3. a worker's credentials producing to the commands topic, and reading
     another host's topic, are refused by the broker (topic authorization
     failed);
  4. a plaintext client of the secure listener gets nothing.
Exit 77 (skipped) when the broker jars or kcat are missing."""
import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, SOURCE, Stack, check, check_count, free_port, wait_for  # noqa: E402
from test_multi_host import FORWARDER, Host, create, through_proxy  # noqa: E402
from test_pg_secure import SecurePostgres  # noqa: E402
from test_pipeline import run_in_sandbox, sandbox_row  # noqa: E402

HOSTS = 2
DEV_STACK = os.path.join(SOURCE, "scripts", "dev-stack")


def port_pair():
    """A free port whose successor is free too (the controller's)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise AssertionError("no free port pair")


class SecureBroker:
    """The test's own secure broker (a dev-stack directory of its own)."""

    def __init__(self, port):
        self.dir = tempfile.mkdtemp(prefix="warren-ksec-kafka-")
        self.port = port
        self.brokers = f"127.0.0.1:{port}"
        self.secrets = os.path.join(self.dir, "kafka", "secrets")
        self.ca = os.path.join(self.dir, "kafka", "tls", "ca.pem")

    def env(self, **more):
        env = dict(os.environ, WARREN_STACK_DIR=self.dir, WARREN_KAFKA_PORT=str(self.port),
                   WARREN_KAFKA_SECURE="1")
        env.update(more)
        return env

    def up(self, roles, prefix, worker_group):
        out = subprocess.run([DEV_STACK, "up", "kafka"], capture_output=True, text=True, timeout=300,
                             env=self.env(WARREN_KAFKA_ROLES=" ".join(roles), WARREN_KAFKA_TOPIC_PREFIX=prefix,
                                          WARREN_WORKER_GROUP=worker_group))
        check(out.returncode == 0, f"secure broker up: {out.stderr[-3000:]}")

    def down(self):
        subprocess.run([DEV_STACK, "down"], capture_output=True, env=self.env(WARREN_PG_PORT="1"))

    def client_env(self, user):
        """The kafka_* settings of a component authenticating as user."""
        return {"WARREN_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "WARREN_KAFKA_SASL_USERNAME": user,
                "WARREN_KAFKA_SASL_PASSWORD_FILE": os.path.join(self.secrets, user + ".password"),
                "WARREN_KAFKA_SSL_CA_FILE": self.ca}

    def kcat(self, user, *args, password=None, stdin=None, plaintext=False):
        """kcat as user (password: a wrong one instead; plaintext: no TLS, no SASL)."""
        if plaintext:
            security = []
        elif password is not None:
            security = ["-X", "security.protocol=sasl_ssl", "-X", "sasl.mechanisms=SCRAM-SHA-512",
                        "-X", f"sasl.username={user}", "-X", f"sasl.password={password}",
                        "-X", f"ssl.ca.location={self.ca}"]
        else:
            security = ["-F", os.path.join(self.secrets, user + ".kcat")]
        return subprocess.run(["kcat", *security, "-b", self.brokers, *args], input=stdin,
                              capture_output=True, text=True, timeout=60)


def refusals(stack, broker, hosts):
    # 2. a wrong password
    out = broker.kcat("api", "-L", "-m", "5", password="not-the-password")
    check(out.returncode != 0 and "Authentication failed" in out.stderr,
          f"kcat with a wrong password: rc {out.returncode} {out.stderr[-400:]!r}")
    wrong = os.path.join(stack.work, "wrong.password")
    with open(wrong, "w") as f:
        f.write("not-the-password\n")
    os.chmod(wrong, 0o600)
    out = subprocess.run([os.path.join(BIN, "warren"), "kafka", "create-topic", stack.prefix + "never"],
                         env=stack.env(WARREN_KAFKA_SASL_PASSWORD_FILE=wrong), capture_output=True, text=True,
                         timeout=60)
    check(out.returncode != 0 and "Kafka refused the login" in out.stderr,
          f"warren kafka with a wrong password: rc {out.returncode} {out.stderr[-400:]!r}")
    print("wrong password: refused (kcat: authentication failed; warren kafka: "
          f"{out.stderr.strip().splitlines()[-1][:200]})")

    # 3. a worker producing where it may not; reading another host's topic
    worker_user = "worker-" + hosts[0].host_id
    commands = stack.prefix + "warren.sandbox.commands"
    out = broker.kcat(worker_user, "-P", "-t", commands, stdin="forged create\n")
    check(out.returncode != 0 and "authorization failed" in out.stderr.lower(),
          f"a worker producing to {commands}: rc {out.returncode} {out.stderr[-400:]!r}")
    other = f"{stack.prefix}warren.host.{hosts[1].host_id}.commands"
    out = broker.kcat(worker_user, "-C", "-t", other, "-o", "beginning", "-e", "-q")
    check(out.returncode != 0 and "authorization failed" in out.stderr.lower(),
          f"a worker reading {other}: rc {out.returncode} {out.stderr[-400:]!r}")
    out = broker.kcat("proxy", "-P", "-t", commands, stdin="forged create\n")
    check(out.returncode != 0 and "authorization failed" in out.stderr.lower(),
          f"the proxy producing to {commands}: rc {out.returncode} {out.stderr[-400:]!r}")
    print("ACLs: a worker producing to the commands topic, a worker reading another host's topic and "
          "the proxy producing a create: topic authorization failed")

    # 4. plaintext to the SASL_SSL listener
    out = broker.kcat("api", "-L", "-m", "5", plaintext=True)
    check(out.returncode != 0 and "broker " not in out.stdout,
          f"a plaintext client got metadata: {out.stdout[-400:]!r}")
    out = subprocess.run([os.path.join(BIN, "warren"), "kafka", "create-topic", stack.prefix + "never"],
                         env=stack.env(WARREN_KAFKA_SECURITY_PROTOCOL="plaintext"), capture_output=True,
                         text=True, timeout=60)
    check(out.returncode != 0, "warren kafka over plaintext succeeded")
    print("plaintext to the secure listener: refused (kcat and warren kafka)")


def works(stack, hosts, proxy_port):
    # 1. creates over SASL_SSL, spread by the worker group
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: create(stack, 120), range(6)))
    failed = [(s, b) for s, b in results if s != 201]
    check(not failed, f"{len(failed)} of 6 creates failed, first: {failed[:1]}")
    ids = [body["sandboxID"] for _, body in results]
    rows = {i: sandbox_row(stack, i) for i in ids}
    check(all(row[0] == "running" for row in rows.values()), f"all running: {rows}")
    placed = {h.host_id: [i for i in ids if rows[i][1] == h.host_id] for h in hosts}
    print("6 creates over SASL_SSL: " + ", ".join(f"{h[-5:]}={len(v)}" for h, v in placed.items()))
    # a public URL through the proxy (its events consumer is a SASL user too)
    by_id = {body["sandboxID"]: body for _, body in results}
    sandbox_id = ids[0]
    body = by_id[sandbox_id]
    run_in_sandbox(stack, sandbox_id, body["envdAccessToken"], body["envdVersion"], rows[sandbox_id][2],
                   "echo secure-kafka > /tmp/www-secure && busybox httpd -p 8080 -h /tmp && echo started")
    status, page = through_proxy(proxy_port, f"8080-{sandbox_id}.warren.test", "/www-secure")
    check(status == 200 and page.decode().strip() == "secure-kafka", f"public URL: {status} {page[:200]!r}")
    print(f"public URL of a sandbox on {rows[sandbox_id][1][-5:]} answered through the proxy")
    # kills travel to each host's own topic
    for sandbox_id in ids:
        status, _, _ = stack.request("DELETE", f"/sandboxes/{sandbox_id}")
        check(status == 204, f"kill {sandbox_id}: {status}")
    wait_for(lambda: all(sandbox_row(stack, i)[0] == "killed" for i in ids), 60, "every sandbox killed")
    print("6 kills: every sandbox killed")
    # every component on its own PostgreSQL role, and only over TLS
    sessions = stack.psql("SELECT a.usename || ':' || s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a "
                          "USING (pid) WHERE a.usename LIKE 'warren_%'")
    seen = set(sessions.split())
    for role in ("warren_api:true", "warren_worker:true", "warren_proxy:true"):
        check(role in seen, f"{role.split(':')[0]} connected over TLS: {sorted(seen)}")
    check(not any(entry.endswith(":false") for entry in seen), f"a plaintext session: {sorted(seen)}")
    print("PostgreSQL: api, worker and proxy each on its own role, every session over TLS")


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups, routes)")
        return 1
    if not shutil.which("kcat") or not shutil.which("openssl"):
        print("SKIP: kcat or openssl missing")
        return 77
    kafka_port = port_pair()
    # Every process of the stack reads these; each component then overrides
    # the user (the `warren` CLI of the test stays the admin).
    os.environ["WARREN_KAFKA_BROKERS"] = f"127.0.0.1:{kafka_port}"
    settings = {"WARREN_HOST_LOST_AFTER_S": "3", "WARREN_CREATE_DEADLINE_MS": "90000"}
    broker = SecureBroker(kafka_port)
    try:
        with SecurePostgres() as pg, Stack("ksec", extra_env=settings,
                                           secure_pg=(pg.secure_dir, pg.port)) as stack:
            pg_port = pg.port
            hosts = [Host(stack, i) for i in range(1, HOSTS + 1)]
            for host in hosts:
                # link and namespace names carry the helper's name, not "mhost"
                host.outer_link = f"k{stack.tag[-6:]}h{host.index}a"
                host.inner_link = f"k{stack.tag[-6:]}h{host.index}b"
                # addresses inside WARREN_TEST_SLOT_CIDR's /16 (10.234.0.0/16 by
                # default): links .250+N.0/30, slots .N*16.0/20
                base = os.environ.get("WARREN_TEST_SLOT_CIDR", "10.234.0.0/16").split(".")[:2]
                host.outer_address = ".".join(base + [str(250 + host.index), "1"])
                host.address = ".".join(base + [str(250 + host.index), "2"])
                host.slots = ".".join(base + [str(16 * host.index), "0"]) + "/20"
            outer = None
            try:
                started = time.time()
                broker.up(["api", "proxy"] + [f"worker:{h.host_id}" for h in hosts], stack.prefix,
                          stack.tag + "-workers")
                stack.extra_env.update(broker.client_env("admin"))
                print(f"secure broker up with users and ACLs in {time.time() - started:.0f} s")
                for topic, partitions in (("warren.sandbox.commands", 12), ("warren.sandbox.events", 12),
                                          ("warren.sandbox.dlq", 3), ("warren.sandbox.commands.vm", 12),
                                          ("warren.sandbox.commands.jail", 12), ("warren.template.builds", 6),
                                          ("warren.template.events", 6)):
                    stack.warren("kafka", "create-topic", stack.prefix + topic, str(partitions))
                stack.start(api=False, worker=False)
                stack.warren("admin", "team", "set-limit", stack.tag, "creation_rate_per_s", "1000")
                outer_ports = {pg_port: free_port(), kafka_port: free_port()}
                pairs = [f"{h.outer_address}:{outer_ports[p]}=127.0.0.1:{p}" for h in hosts for p in (pg_port, kafka_port)]
                for host in hosts:
                    host.up(pg_port, kafka_port, outer_ports)
                outer = subprocess.Popen([sys.executable, FORWARDER, *pairs], stdout=subprocess.PIPE, text=True,
                                         start_new_session=True)
                check(outer.stdout.readline().startswith("forwarding"), "outer forwarder")
                for host in hosts:
                    host.start_worker(**broker.client_env("worker-" + host.host_id))
                stack.start_api(**broker.client_env("api"))
                proxy_port = free_port()
                stack.spawn("proxy", "warren-proxy", WARREN_PROXY_LISTEN=f"127.0.0.1:{proxy_port}",
                            **broker.client_env("proxy"))
                wait_for(lambda: subprocess.run(["ss", "-ltn", f"sport = :{proxy_port}"], capture_output=True,
                                                text=True).stdout.count("LISTEN") > 0, 30, "warren-proxy to listen")
                works(stack, hosts, proxy_port)
                refusals(stack, broker, hosts)
                check("events: invalidating the cache" in stack.log("proxy"), "the proxy consumes events")
            except BaseException:
                for host in hosts:
                    print(f"--- {host.log_name} log (tail)\n{stack.log(host.log_name)[-3000:]}")
                raise
            finally:
                for host in hosts:
                    host.down()
                if outer and outer.poll() is None:
                    os.killpg(outer.pid, signal.SIGTERM)
                    outer.wait(10)
    finally:
        # after the stack's own clean-up, which deletes its topics as the admin
        broker.down()
    print(f"secure kafka: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
