"""A warren stack for end-to-end tests: its own PostgreSQL database and
Kafka topic prefix on the dev-stack services, then warren-worker and
warren-api (and warren-proxy when built) as real processes. Everything is
removed on exit, also when a test fails. Standard library only."""
import json
import os
import random
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SOURCE = os.environ.get("WARREN_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "../..")))
BUILD = os.environ.get("WARREN_BUILD_DIR", os.path.join(SOURCE, "build"))
BIN = os.path.join(BUILD, "bin")


def free_port():
    # A wildcard bind, as the listeners that get the port make: a port free
    # on 127.0.0.1 may still be refused to 0.0.0.0 (a TIME-WAIT connection
    # on another local address holds it).
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def require_env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"FAIL: {name} is not set (eval \"$(scripts/dev-stack env)\")")
    return value


_checks = 0


def check(condition, what):
    """Raises AssertionError(what) unless condition; counts the checks that held."""
    global _checks
    if not condition:
        raise AssertionError(what)
    _checks += 1


def check_count():
    """How many check() calls have held so far in this process."""
    return _checks


def wait_for(predicate, timeout, what, interval=0.1):
    """Polls predicate every interval s until it returns something truthy (returned),
    or raises AssertionError after timeout s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


class Stack:
    def __init__(self, name="e2e", capacity=32, extra_env=None, with_base=False, secure_pg=None):
        """secure_pg: (folder, port) of a PostgreSQL started with WARREN_PG_SECURE=1
        (scripts/pg-secure.sh): every process then connects over verify-full TLS
        as its own role (api, worker, proxy; the CLI as the admin)."""
        self.with_base = with_base
        self.tag = name + "".join(random.choices(string.ascii_lowercase + string.digits, k=6))
        if secure_pg is None and os.environ.get("WARREN_PG_SECURE_DIR"):
            # a dev stack in secure mode: every suite runs on the roles
            secure_pg = (os.environ["WARREN_PG_SECURE_DIR"],
                         urllib.parse.urlsplit(require_env("WARREN_PG_URL")).port)
        self.secure_pg = secure_pg
        if secure_pg:
            self.base_pg = f"postgresql://warren_admin@127.0.0.1:{secure_pg[1]}/postgres"
        else:
            self.base_pg = require_env("WARREN_PG_URL")
        self.brokers = require_env("WARREN_KAFKA_BROKERS")
        self.work = tempfile.mkdtemp(prefix=f"warren-{self.tag}-")
        self.database = self.tag
        self.pg_url = self.base_pg.rsplit("/", 1)[0] + "/" + self.database
        self.prefix = self.tag + "."
        self.host_id = self.tag + "-host"
        self.seed = "e2e-seed-" + self.tag + "-0123456789"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.egress_http_port = free_port()
        self.egress_tls_port = free_port()
        self.processes = {}
        self.capacity = capacity
        self.extra_env = extra_env or {}
        self.templates_dir = os.path.join(self.work, "templates")
        self.state_dir = os.path.join(self.work, "sandboxes")
        self.api_key = None
        self.team_id = None

    # ---- set-up ----
    def env(self, **more):
        env = dict(os.environ)
        env.update({
            "WARREN_PG_URL": self.pg_url,
            "WARREN_KAFKA_BROKERS": self.brokers,
            "WARREN_KAFKA_TOPIC_PREFIX": self.prefix,
            "WARREN_TOKEN_SEED": self.seed,
            "WARREN_HOST_ID": self.host_id,
            "WARREN_TEMPLATES_DIR": self.templates_dir,
            "WARREN_STATE_DIR": self.state_dir,
            "WARREN_VOLUMES_DIR": os.path.join(self.work, "volumes"),
            "WARREN_JAIL_CGROUP_PARENT": "warren-" + self.tag,
            "WARREN_SLOT_NETNS_PREFIX": self.tag + "-slot-",
            "WARREN_SLOT_LINK_PREFIX": "w" + self.tag[-6:],
            # Stacks run side by side (several checkouts on one machine) set
            # WARREN_TEST_SLOT_CIDR apart so their host routes do not clash.
            "WARREN_SLOT_CIDR": os.environ.get("WARREN_TEST_SLOT_CIDR", "10.213.0.0/16"),
            "WARREN_SLOT_PRECREATE": "2",
            # Each stack's worker runs its own egress proxy listeners.
            "WARREN_EGRESS_PROXY_HTTP_PORT": str(self.egress_http_port),
            "WARREN_EGRESS_PROXY_TLS_PORT": str(self.egress_tls_port),
            "WARREN_WORKER_GROUP": self.tag + "-workers",
            "WARREN_WORKER_CAPACITY": str(self.capacity),
            "WARREN_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "WARREN_API_LISTEN": f"127.0.0.1:{self.api_port}",
            "WARREN_DOMAIN": "warren.test",
            "WARREN_CREATE_DEADLINE_MS": "30000",
        })
        if self.secure_pg:
            # only warren's own settings may carry the password and the CA
            for name in ("PGPASSFILE", "PGPASSWORD", "PGSSLMODE", "PGSSLROOTCERT"):
                env.pop(name, None)
        env.update(self.pg_role_env("admin"))
        env.update(self.extra_env)
        env.update(more)
        return env

    def pg_role_env(self, role):
        """With secure_pg: the settings that connect as warren_<role> (a
        password file, verify-full against the stack's CA); else none."""
        if not self.secure_pg:
            return {}
        folder, port = self.secure_pg
        return {"WARREN_PG_URL": f"postgresql://warren_{role}@127.0.0.1:{port}/{self.database}",
                "WARREN_PG_PASSWORD_FILE": os.path.join(folder, f"warren_{role}.password"),
                "WARREN_PG_SSL_MODE": "verify-full",
                "WARREN_PG_SSL_ROOT_CERT": os.path.join(folder, "ca.crt")}

    def psql_env(self):
        """psql's environment: with secure_pg, libpq's own variables (its
        pgpass file holds every role's password)."""
        env = dict(os.environ)
        if self.secure_pg:
            env.update(PGPASSFILE=os.path.join(self.secure_pg[0], "pgpass"), PGSSLMODE="verify-full",
                       PGSSLROOTCERT=os.path.join(self.secure_pg[0], "ca.crt"))
        return env

    def psql(self, sql, database=None):
        url = self.pg_url if database is None else self.base_pg
        out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
                             check=True, capture_output=True, text=True, env=self.psql_env())
        return out.stdout.strip()

    def warren(self, *args):
        out = subprocess.run([os.path.join(BIN, "warren"), *args], env=self.env(),
                             check=True, capture_output=True, text=True)
        return out.stdout

    def build_template(self, name="minimal"):
        subprocess.run([os.path.join(SOURCE, "guest/rootfs/build-template.sh"), "--name", name,
                        "--agent", os.path.join(BIN, "warren-agent"),
                        "--templates-dir", self.templates_dir],
                       check=True, env=self.env(), stdout=subprocess.DEVNULL)

    def start(self, api=True, worker=True):
        self.psql(f'CREATE DATABASE "{self.database}"', database="postgres")
        self.warren("migrate")
        out = self.warren("admin", "team", "create", self.tag, "--tier", "pro")
        self.team_id = self.psql(f"SELECT id FROM teams WHERE name = '{self.tag}'")
        out = self.warren("admin", "key", "create", "--team", self.tag)
        self.api_key = next(w for w in out.split() if w.startswith("e2b_"))
        self.build_template("minimal")
        if self.with_base:
            self.build_template("base")
        if worker:
            self.start_worker()
        if api:
            self.start_api()
        return self

    def spawn(self, name, binary, **env):
        log = open(os.path.join(self.work, name + ".log"), "ab")
        role = {"warren-api": "api", "warren-worker": "worker", "warren-proxy": "proxy"}.get(binary, "admin")
        env = {**self.pg_role_env(role), **env}
        process = subprocess.Popen([os.path.join(BIN, binary)], env=self.env(**env),
                                   stdout=log, stderr=log, start_new_session=True)
        self.processes[name] = process
        return process

    def start_worker(self, name="worker", wait=True):
        self.spawn(name, "warren-worker")
        if wait:
            self.wait_log(name, "ready:", 60)

    def spawn_second_worker(self, slot_cidr, name="worker2"):
        """A second worker on this machine as another host: its own host
        id (returned), state dir, cgroup parent, slot prefixes, slot_cidr
        and egress proxy ports; same database and topics. Not waited for."""
        host_id = self.tag + "-host2"
        self.spawn(name, "warren-worker", WARREN_HOST_ID=host_id,
                   WARREN_STATE_DIR=os.path.join(self.work, "sandboxes2"),
                   WARREN_JAIL_CGROUP_PARENT="warren-" + self.tag + "-2",
                   WARREN_SLOT_NETNS_PREFIX=self.tag + "-slot2-", WARREN_SLOT_LINK_PREFIX="x" + self.tag[-6:],
                   WARREN_SLOT_CIDR=slot_cidr, WARREN_EGRESS_PROXY_HTTP_PORT=str(free_port()),
                   WARREN_EGRESS_PROXY_TLS_PORT=str(free_port()))
        return host_id

    def start_api(self, **env):
        """env: settings for this process only (e.g. WARREN_PG_URL through a proxy)."""
        self.spawn("api", "warren-api", **env)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.api_port), timeout=0.2).close()
                return
            except OSError:
                if self.processes["api"].poll() is not None:
                    break
                time.sleep(0.1)
        raise AssertionError("warren-api did not start:\n" + self.log("api"))

    def log(self, name):
        try:
            with open(os.path.join(self.work, name + ".log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, name, text, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log(name):
                return
            if self.processes[name].poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{name} did not log {text!r}:\n" + self.log(name)[-4000:])

    def kill(self, name, sig=signal.SIGTERM, timeout=30):
        process = self.processes.pop(name, None)
        if not process or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    # ---- the API ----
    def request(self, method, path, body=None, key=None, headers=None):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("X-API-Key", key if key is not None else self.api_key)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None), dict(resp.headers)
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw
            return err.code, parsed, dict(err.headers)

    def events(self, topic="warren.sandbox.events"):
        out = subprocess.run(["kcat", "-b", self.brokers, "-C", "-t", self.prefix + topic,
                              "-o", "beginning", "-e", "-q", "-f", "%s\n"],
                             capture_output=True, text=True, timeout=60)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    # ---- tear-down ----
    def close(self):
        for name in list(self.processes):
            self.kill(name)
        # A worker that died uncleanly leaves its slots: remove every
        # namespace and link carrying this stack's prefixes.
        for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(self.tag + "-slot-"):
                subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        link_prefix = "w" + self.tag[-6:]
        for line in subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.splitlines():
            fields = line.split(":")
            if len(fields) > 1 and fields[1].strip().split("@")[0].startswith(link_prefix):
                subprocess.run(["ip", "link", "delete", fields[1].strip().split("@")[0]], capture_output=True)
        # and its host table: left behind, its input chain keeps dropping
        # the worker's egress proxy ports for everyone but the slots, which
        # hung a later test's connect whose ephemeral port was one of them
        # (the second worker's and other hosts' prefixes: "x", "y", "z")
        for first in "wxyz":
            subprocess.run(["nft", "delete", "table", "inet", "warren_host_" + first + self.tag[-6:]],
                           capture_output=True)
        try:
            self.psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)', database="postgres")
        except subprocess.CalledProcessError:
            pass
        for topic in ("warren.sandbox.commands", "warren.sandbox.events", "warren.sandbox.dlq",
                      f"warren.host.{self.host_id}.commands"):
            subprocess.run([os.path.join(BIN, "warren"), "kafka", "delete-topic", self.prefix + topic],
                           env=self.env(), capture_output=True)
        # the jails' cgroup parent (left empty in every hierarchy)
        for hierarchy in ("", "unified", "memory", "cpu", "pids", "cpuacct"):
            try:
                os.rmdir(os.path.join("/sys/fs/cgroup", hierarchy, "warren-" + self.tag))
            except OSError:
                pass
        if os.environ.get("WARREN_KEEP_TEST_DIR"):
            print("kept", self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            for name in ("worker", "api", "proxy"):
                text = self.log(name)
                if text:
                    print(f"--- {name} log (tail)\n{text[-6000:]}")
        self.close()
