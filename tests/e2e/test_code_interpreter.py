#!/usr/bin/env python3
"""End to end: the npm @e2b/code-interpreter package (unchanged, env vars
only) against a warren stack: Sandbox.create() with its default template
code-interpreter-v1 (built here by guest/rootfs/build-template.sh, Debian +
ipykernel, cached), then runCode through warren-interpreter in the sandbox: direct to the
slot, then env vars only through warren-proxy, then WARREN_CI_ROUNDS
(default 3) rounds of create + first runCode (WARREN_CI_ROUNDS_ONLY=1:
only those, a loop for diagnosis).
Needs root, the dev stack (WARREN_PG_URL, WARREN_KAFKA_BROKERS), the npm
package (scripts/setup) and warren-interpreter (libzmq3-dev); exits 77
(skip) when one is missing."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, Stack, check, free_port, wait_for  # noqa: E402

CI_VERSION = os.environ.get("E2B_CODE_INTERPRETER_VERSION", "2.8.0")
CACHE = os.environ.get("WARREN_CACHE_DIR", os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warren"))
CI_DIR = os.path.join(CACHE, "npm-e2b-code-interpreter", CI_VERSION)


def main():
    for ok, why in ((os.geteuid() == 0, "needs root (namespaces, cgroups)"),
                    (os.environ.get("WARREN_PG_URL") and os.environ.get("WARREN_KAFKA_BROKERS"),
                     "no dev stack (WARREN_PG_URL / WARREN_KAFKA_BROKERS)"),
                    (os.path.exists(os.path.join(CI_DIR, ".complete")), f"no npm package in {CI_DIR} (scripts/setup)"),
                    (os.access(os.path.join(BIN, "warren-interpreter"), os.X_OK), "warren-interpreter not built (libzmq3-dev)")):
        if not ok:
            print("SKIP:", why)
            return 77
    with Stack("interp") as stack:
        stack.start(api=False, worker=False)
        stack.build_template("code-interpreter-v1")
        stack.start_worker()
        stack.start_api()
        proxy_port = None
        if os.access(os.path.join(BIN, "warren-proxy"), os.X_OK):
            proxy_port = free_port()
            stack.spawn("proxy", "warren-proxy", WARREN_PROXY_LISTEN=f"127.0.0.1:{proxy_port}")
            wait_for(lambda: subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{proxy_port}"],
                                            capture_output=True).returncode == 0, 30, "warren-proxy to listen")
        # Direct to the slot, then (when warren-proxy is built) env vars only.
        # WARREN_CI_ROUNDS_ONLY=1: only the first-call rounds (a loop to
        # diagnose with).
        for via_proxy in ([] if os.environ.get("WARREN_CI_ROUNDS_ONLY") else [False, True] if proxy_port else [False]):
            env = dict(os.environ, E2B_CI_DIR=CI_DIR, E2B_API_URL=stack.api_url, E2B_API_KEY=stack.api_key,
                       E2B_DOMAIN="warren.test", WARREN_PG_URL=stack.pg_url, WARREN_STATE_DIR=stack.state_dir)
            if via_proxy:
                env["E2B_SANDBOX_URL"] = f"http://127.0.0.1:{proxy_port}"
            out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "sdk_code_interpreter.cjs")],
                                 env=env, capture_output=True, text=True, timeout=300)
            print(out.stdout)
            check(out.returncode == 0, "@e2b/code-interpreter e2e failed:\n" + out.stdout + out.stderr)
        # The first runCode after create, several rounds (WARREN_CI_ROUNDS,
        # default 3), through warren-proxy when built.
        env = dict(os.environ, E2B_CI_DIR=CI_DIR, E2B_API_URL=stack.api_url, E2B_API_KEY=stack.api_key,
                   E2B_DOMAIN="warren.test", WARREN_STATE_DIR=stack.state_dir)
        if proxy_port:
            env["E2B_SANDBOX_URL"] = f"http://127.0.0.1:{proxy_port}"
        rounds = int(os.environ.get("WARREN_CI_ROUNDS", "3"))
        out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "sdk_code_interpreter_first_call.cjs")],
                             env=env, capture_output=True, text=True, timeout=120 + 60 * rounds)
        print(out.stdout)
        check(out.returncode == 0, "first-call rounds failed:\n" + out.stdout + out.stderr)
        if not proxy_port:
            print("warren-proxy not built: the env-vars-only run (E2B_SANDBOX_URL) was not made")
    print("e2e code interpreter: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
