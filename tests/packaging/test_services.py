#!/usr/bin/env python3
"""The services as systemd runs them (Type=notify), without systemd: each
of warren-worker, warren-api and warren-proxy gets its own NOTIFY_SOCKET
and must send READY=1 only once it serves (the worker after its "ready:"
line, the API and the proxy when their port answers), then on SIGTERM
STOPPING=1 and exit 0. The API runs from a configuration file of record
alone (no WARREN_* settings in its environment), with pg_url and
token_seed from secret files, and answers an authenticated request.
Needs the dev stack (WARREN_PG_URL, WARREN_KAFKA_BROKERS) and root."""
import os
import signal
import socket
import subprocess
import sys
import time

SOURCE = os.environ["WARREN_SOURCE_DIR"]
sys.path.insert(0, os.path.join(SOURCE, "tests/e2e"))
from stack import BIN, Stack, check, check_count, free_port  # noqa: E402


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
        stack.spawn("worker", "warren-worker", NOTIFY_SOCKET=worker_path)
        message = receive(worker_sock, 90)
        check(message == "READY=1", f"worker: READY=1 (got {message!r})\n" + stack.log("worker")[-3000:])
        check("ready:" in stack.log("worker"), "worker: READY=1 after its ready: line")

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
