#!/usr/bin/env python3
"""The services as systemd runs them (Type=notify), without systemd: each
of warren-worker, warren-api and warren-proxy gets its own NOTIFY_SOCKET
and must send READY=1 only once it serves (the worker after its "ready:"
line, the API and the proxy when their port answers), then on SIGTERM
STOPPING=1 and exit 0. The worker runs with only the capabilities its
unit's CapabilityBoundingSet lists (setpriv --bounding-set) and still
creates a sandbox, runs a command in it and kills it. The API runs from a
configuration file of record alone (no WARREN_* settings in its
environment), with pg_url and token_seed from secret files, and answers
an authenticated request. Needs the dev stack (WARREN_PG_URL,
WARREN_KAFKA_BROKERS), root, and for the command node with the e2b SDK."""
import os
import signal
import socket
import subprocess
import sys
import time

SOURCE = os.environ["WARREN_SOURCE_DIR"]
sys.path.insert(0, os.path.join(SOURCE, "tests/e2e"))
from stack import BIN, Stack, check, check_count, free_port  # noqa: E402
from test_pipeline import run_in_sandbox, sandbox_row  # noqa: E402


def unit_capabilities():
    """The worker unit's CapabilityBoundingSet, as setpriv's list."""
    unit = os.path.join(SOURCE, "packaging/systemd/warren-worker.service.in")
    with open(unit) as f:
        line = next(l for l in f if l.startswith("CapabilityBoundingSet="))
    names = line.split("=", 1)[1].split()
    return "-all," + ",".join("+" + n.lower().removeprefix("cap_") for n in names)


def start_bounded_worker(stack, sock_path):
    """warren-worker under the unit's bounding set (what systemd would leave it)."""
    log = open(os.path.join(stack.work, "worker.log"), "ab")
    stack.processes["worker"] = subprocess.Popen(
        ["setpriv", "--bounding-set", unit_capabilities(), "--",
         os.path.join(BIN, "warren-worker")],
        env=stack.env(NOTIFY_SOCKET=sock_path), stdout=log, stderr=log, start_new_session=True)


def sandbox_round_trip(stack):
    status, body, _ = stack.request("POST", "/sandboxes",
                                    {"templateID": "minimal", "timeout": 60, "secure": True})
    check(status == 201, f"create under the unit's capabilities: {status} {body}\n"
          + stack.log("worker")[-3000:])
    sandbox = body["sandboxID"]
    address = sandbox_row(stack, sandbox)[2]
    output = run_in_sandbox(stack, sandbox, body["envdAccessToken"], body["envdVersion"],
                            address, "echo bounded-$((6*7))")
    check("bounded-42" in output, f"a command runs in it: {output!r}")
    status, _, _ = stack.request("DELETE", f"/sandboxes/{sandbox}")
    check(status == 204, f"kill: {status}")


def notify_socket(stack, name):
    path = os.path.join(stack.work, name + ".notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    return sock, path


def receive(sock, timeout):
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).decode()
    except socket.timeout:
        return None


def port_answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def stop(stack, name, sock):
    process = stack.processes.pop(name)
    os.killpg(process.pid, signal.SIGTERM)
    message = receive(sock, 60)
    check(message == "STOPPING=1", f"{name}: STOPPING=1 on SIGTERM (got {message!r})")
    check(process.wait(120) == 0, f"{name}: exit status 0 after draining")


def api_from_config_file(stack, sock_path):
    """warren-api with settings from a file only; secrets in files."""
    secrets = os.path.join(stack.work, "secrets")
    os.makedirs(secrets, mode=0o750)
    for name, value in (("pg_url", stack.pg_url), ("token_seed", stack.seed)):
        with open(os.path.join(secrets, name), "w") as f:
            f.write(value + "\n")
        os.chmod(os.path.join(secrets, name), 0o600)
    config = os.path.join(stack.work, "warren.conf")
    with open(config, "w") as f:
        f.write(f"""# test_services
api_listen = 127.0.0.1:{stack.api_port}
kafka_brokers = {stack.brokers}
kafka_topic_prefix = {stack.prefix}
domain = warren.test
pg_url_file = {secrets}/pg_url
token_seed_file = {secrets}/token_seed
log_level = info
""")
    check(subprocess.run([os.path.join(BIN, "warren"), "config", "check", config],
                         capture_output=True).returncode == 0, "the API's file passes config check")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARREN_")}
    env.update(WARREN_CONFIG=config, NOTIFY_SOCKET=sock_path)
    log = open(os.path.join(stack.work, "api.log"), "ab")
    stack.processes["api"] = subprocess.Popen([os.path.join(BIN, "warren-api")], env=env,
                                              stdout=log, stderr=log, start_new_session=True)


def main():
    if os.geteuid() != 0:
        print("SKIP: the worker needs root (namespaces, nftables)")
        return 77
    with Stack("ship") as stack:
        stack.start(api=False, worker=False)
        worker_sock, worker_path = notify_socket(stack, "worker")
        start_bounded_worker(stack, worker_path)
        message = receive(worker_sock, 90)
        check(message == "READY=1", f"worker: READY=1 (got {message!r})\n" + stack.log("worker")[-3000:])
        check("ready:" in stack.log("worker"), "worker: READY=1 after its ready: line")
        with open(f"/proc/{stack.processes['worker'].pid}/status") as f:
            caps = {k: int(v, 16) for k, v in (l.split(":\t") for l in f if l.startswith("Cap"))}
        # bit 21 CAP_SYS_ADMIN (listed), 16 CAP_SYS_MODULE and 13 CAP_NET_RAW (not)
        check(caps["CapEff"] >> 21 & 1 and not caps["CapEff"] >> 16 & 1
              and not caps["CapBnd"] >> 13 & 1,
              f"worker: runs with the unit's bounding set (CapEff {caps['CapEff']:#x})")

        api_sock, api_path = notify_socket(stack, "api")
        api_from_config_file(stack, api_path)
        message = receive(api_sock, 90)
        check(message == "READY=1", f"api: READY=1 (got {message!r})\n" + stack.log("api")[-3000:])
        check(port_answers(stack.api_port), "api: its port answers when it says READY=1")
        status, body, _ = stack.request("GET", "/sandboxes")
        check(status == 200 and body == [],
              f"api (settings and secrets from the file) answers GET /sandboxes: {status}")
        status, _, _ = stack.request("GET", "/sandboxes", key="e2b_" + "0" * 40)
        check(status == 401, f"api refuses an unknown key: {status}")

        sandbox_round_trip(stack)

        proxy_sock, proxy_path = notify_socket(stack, "proxy")
        proxy_port = free_port()
        stack.spawn("proxy", "warren-proxy", NOTIFY_SOCKET=proxy_path,
                    WARREN_PROXY_LISTEN=f"127.0.0.1:{proxy_port}")
        message = receive(proxy_sock, 60)
        check(message == "READY=1", f"proxy: READY=1 (got {message!r})\n" + stack.log("proxy")[-3000:])
        check(port_answers(proxy_port), "proxy: its port answers when it says READY=1")

        for name, sock in (("proxy", proxy_sock), ("api", api_sock), ("worker", worker_sock)):
            stop(stack, name, sock)
    print(f"ok: {check_count()} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
