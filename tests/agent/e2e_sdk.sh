#!/usr/bin/env bash
# e2e (labels: e2e agent): the npm e2b SDK against a real warren-agent on
# 127.0.0.1. Installs e2b@$E2B_SDK_VERSION into the warren cache when
# absent (scripts/setup does the same). Exit 77 = skipped (no node/npm).
set -euo pipefail
AGENT=${1:?usage: e2e_sdk.sh path/to/warren-agent}
HERE=$(cd "$(dirname "$0")" && pwd)
E2B_SDK_VERSION=${E2B_SDK_VERSION:-2.51.0}
CACHE=${WARREN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/warren}
SDK_DIR="$CACHE/npm-e2b/$E2B_SDK_VERSION"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "SKIP: node/npm not installed (scripts/setup installs them)"
	exit 77
fi
if [ ! -f "$SDK_DIR/.complete" ]; then
	echo "installing e2b@$E2B_SDK_VERSION into $SDK_DIR"
	mkdir -p "$SDK_DIR"
	if ! (cd "$SDK_DIR" && npm init -y >/dev/null &&
		npm install --no-audit --no-fund "e2b@$E2B_SDK_VERSION" >/dev/null); then
		echo "SKIP: cannot install e2b@$E2B_SDK_VERSION from npm (offline?); run scripts/setup"
		exit 77
	fi
	touch "$SDK_DIR/.complete"
fi

WORK=$(mktemp -d)
LOG="$WORK/agent.log"
AGENT_PID=
cleanup() {
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
HASH=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$AGENT" --listen "127.0.0.1:$PORT" --token-hash "sha256:$HASH" 2>"$LOG" &
AGENT_PID=$!
for _ in $(seq 100); do
	curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break
	sleep 0.05
done
curl -fsS -X POST "http://127.0.0.1:$PORT/init" -H 'Content-Type: application/json' \
	-d "{\"accessToken\":\"$TOKEN\",\"defaultUser\":\"root\",\"envVars\":{\"HOME\":\"$WORK\"}}"

status=0
E2B_SDK_DIR="$SDK_DIR" AGENT_URL="http://127.0.0.1:$PORT" AGENT_TOKEN="$TOKEN" \
	AGENT_VERSION=$("$AGENT" --version) WORK_DIR="$WORK" \
	timeout 120 node "$HERE/e2e_sdk.cjs" || status=$?
if [ $status -ne 0 ]; then
	echo "--- agent log"
	cat "$LOG"
fi
exit $status
