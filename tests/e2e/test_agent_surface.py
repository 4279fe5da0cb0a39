#!/usr/bin/env python3
"""e2e (labels e2e, agent): the npm e2b SDK, unchanged (env vars only),
against a warren stack (warren-api, Kafka, warren-worker with the jail
runtime, PostgreSQL, warren-proxy): a base sandbox's PTY, files.watchDir,
gzip transfers, and a server bound to 127.0.0.1 inside reached at
getHost(8000) through warren-proxy (tests/e2e/sdk_agent.cjs). Needs root,
the dev stack (WARREN_PG_URL / WARREN_KAFKA_BROKERS) and the npm SDK;
exits 77 (skip) when one is missing."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, Stack, check, free_port, wait_for  # noqa: E402

SDK_VERSION = os.environ.get("E2B_SDK_VERSION", "2.51.0")
CACHE = os.environ.get("WARREN_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warren"))
SDK_DIR = os.path.join(CACHE, "npm-e2b", SDK_VERSION)


def main():
    for ok, why in ((os.geteuid() == 0, "needs root (namespaces, cgroups)"),
                    (os.environ.get("WARREN_PG_URL") and os.environ.get("WARREN_KAFKA_BROKERS"),
                     "no dev stack (WARREN_PG_URL / WARREN_KAFKA_BROKERS)"),
                    (os.path.isdir(os.path.join(SDK_DIR, "node_modules", "e2b")),
                     f"no npm e2b SDK in {SDK_DIR} (scripts/setup)")):
        if not ok:
            print("SKIP:", why)
            return 77
    with Stack("agsurf", with_base=True) as stack:
        stack.start()
        env = dict(os.environ, E2B_SDK_DIR=SDK_DIR, E2B_API_URL=stack.api_url,
                   E2B_API_KEY=stack.api_key, E2B_DOMAIN="warren.test")
        if os.access(os.path.join(BIN, "warren-proxy"), os.X_OK):
            proxy_port = free_port()
            stack.spawn("proxy", "warren-proxy", WARREN_PROXY_LISTEN=f"127.0.0.1:{proxy_port}")
            wait_for(lambda: subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{proxy_port}"],
                                            capture_output=True).returncode == 0, 30, "warren-proxy to listen")
            env.update(E2B_SANDBOX_URL=f"http://127.0.0.1:{proxy_port}",
                       PROXY_ADDRESS=f"127.0.0.1:{proxy_port}")
        else:
            print("warren-proxy not built: the SDK talks to the slot directly, no getHost check")
        out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "sdk_agent.cjs")],
                             env=env, capture_output=True, text=True, timeout=400)
        print(out.stdout)
        check(out.returncode == 0, "SDK agent surface failed:\n" + out.stdout + out.stderr)
    print("e2e agent surface: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
