"""e2e (labels e2e, proxy): warren-proxy in front of a real sandbox. The
stack of tests/e2e/stack.py (warren-api + warren-worker, jail runtime,
dev-stack PostgreSQL and Kafka) plus warren-proxy; a sandbox created
through the API with allowPublicTraffic=false. Checks: the agent's
/health through the proxy on 49983 without a traffic token (slot address
routing, the agent port's exemption); 403 missing / invalid on another
port; the right token passes the guard and reaches the slot, where nothing
listens on that port: 502 "port is not open"; after a kill through the
API: 502 "The sandbox was not found" (result event or TTL)."""
import http.client
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
from stack import Stack, check, check_count, free_port  # noqa: E402

def through_proxy(port, host, headers=None, path="/"):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    connection.request("GET", path, headers=dict({"Host": host}, **(headers or {})))
    response = connection.getresponse()
    body = response.read()
    connection.close()
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body
    return response.status, parsed


def run_in_sandbox(sandbox_id, access_token, version, _url, stack, command):
    """Runs command through the npm e2b SDK straight at the agent (as
    tests/e2e/test_pipeline.py does)."""
    import subprocess
    from test_pipeline import SDK_DIR
    address = stack.psql(f"SELECT host(slot_address) FROM sandboxes WHERE id = '{sandbox_id}'")
    out = subprocess.run(
        ["node", os.path.join(os.path.dirname(__file__), "..", "e2e", "sdk_command.cjs")],
        env=dict(os.environ, E2B_SDK_DIR=SDK_DIR, SANDBOX_ID=sandbox_id, ACCESS_TOKEN=access_token,
                 ENVD_VERSION=version, SANDBOX_URL=f"http://{address}:49983", COMMAND=command),
        capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "running a command failed:\n" + out.stdout + out.stderr)
    return out.stdout


def main():
    if os.geteuid() != 0:
        print("FAIL: the e2e suite needs root (namespaces, cgroups)")
        return 1
    with Stack("proxye2e") as stack:
        stack.start()
        proxy_port = free_port()
        stack.spawn("proxy", "warren-proxy", WARREN_PROXY_LISTEN=f"127.0.0.1:{proxy_port}",
                    WARREN_PROXY_CACHE_TTL_MS="1000")
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", proxy_port), timeout=0.2).close()
                break
            except OSError:
                check(time.time() < deadline and stack.processes["proxy"].poll() is None,
                      "warren-proxy did not start:\n" + stack.log("proxy"))
                time.sleep(0.1)

        status, body, _ = stack.request("POST", "/sandboxes", {
            "templateID": "minimal", "timeout": 120, "secure": True,
            "network": {"allowPublicTraffic": False}})
        check(status == 201, f"create answered {status}: {body}\n" + stack.log("worker")[-3000:])
        sandbox_id = body["sandboxID"]
        body_create = body
        token = body.get("trafficAccessToken")
        check(bool(token), f"trafficAccessToken in {body}")
        domain = body.get("domain") or "warren.test"

        status, _ = through_proxy(proxy_port, f"49983-{sandbox_id}.{domain}", path="/health")
        check(status == 204, f"agent /health through the proxy: {status}\n" + stack.log("proxy")[-2000:])
        print(f"agent /health through warren-proxy: {status}")

        host = f"8080-{sandbox_id}.{domain}"
        status, body = through_proxy(proxy_port, host)
        check(status == 403 and "is missing" in body["message"], f"no token: {status} {body}")
        status, body = through_proxy(proxy_port, host, {"e2b-traffic-access-token": "wrong"})
        check(status == 403 and "is invalid" in body["message"], f"bad token: {status} {body}")
        status, body = through_proxy(proxy_port, host, {"e2b-traffic-access-token": token})
        check(status == 502 and body["message"] == "The sandbox is running but port is not open"
              and body["port"] == 8080 and body["sandboxId"] == sandbox_id,
              f"right token, closed port: {status} {body}")

        # a server in the sandbox (busybox httpd daemonizes), through the proxy
        out = run_in_sandbox(sandbox_id, body_create["envdAccessToken"], body_create["envdVersion"],
                             body_create.get("envdUrl"), stack, "busybox httpd -p 8080 -h /etc && echo started")
        print("in sandbox:", out.strip())
        status, body = through_proxy(proxy_port, host, {"e2b-traffic-access-token": token},
                                     path="/hostname")
        print("GET /hostname through warren-proxy:", status)
        check(status == 200, f"httpd in the sandbox through the proxy: {status} {body}")

        status, body, _ = stack.request("DELETE", f"/sandboxes/{sandbox_id}")
        check(status == 204, f"kill answered {status}: {body}")
        deadline = time.time() + 10
        while True:
            status, body = through_proxy(proxy_port, f"49983-{sandbox_id}.{domain}", path="/health")
            if status == 502 and body.get("message") == "The sandbox was not found":
                break
            check(time.time() < deadline, f"killed sandbox still answers: {status} {body}")
            time.sleep(0.2)
        check(body["sandboxId"] == sandbox_id, f"not found body: {body}")
    print(f"proxy e2e: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
