#!/usr/bin/env bash
# integration (labels: integration agent): the agent's loopback forwarder
# in a network namespace this test makes (agentfwd<pid>: lo and a veth pair,
# one end with 192.0.2.10/24, a documentation address; no route out). In it:
# the agent on 0.0.0.0 (forwarding on by default there), servers bound to
# 127.0.0.1 and ::1 become reachable at 192.0.2.10 on the same port, a
# 0.0.0.0 server is left alone, a 20 MiB body crosses the relay intact,
# and the forward stops when its server does. Then an idle agent
# (--forward-active-ms 500) scans only every 10 s: a loopback server it
# did not start stays unforwarded for seconds, until a /init makes it scan
# within one. Exit 77 = skipped (not root, no ip/curl).
# Usage: forward_netns.sh path/to/warren-agent
set -euo pipefail
AGENT=${1:?usage: forward_netns.sh path/to/warren-agent}
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v curl >/dev/null; then
	echo "SKIP: needs root, ip and curl (a network namespace)"
	exit 77
fi
NS=agentfwd$$
WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
if ! ip netns add "$NS" 2>/dev/null; then
	echo "SKIP: cannot create a network namespace"
	exit 77
fi
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up
in_ns ip link add agentfwd0 type veth peer name agentfwd1
in_ns ip addr add 192.0.2.10/24 dev agentfwd0
in_ns ip link set agentfwd0 up
in_ns ip link set agentfwd1 up

head -c $((20 * 1024 * 1024)) /dev/urandom >"$WORK/big.bin"
echo "hello over loopback" >"$WORK/hello.txt"
ip netns exec "$NS" "$AGENT" --listen 0.0.0.0:49983 2>"$WORK/agent.log" &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
ip netns exec "$NS" python3 -m http.server --bind 127.0.0.1 8000 --directory "$WORK" >/dev/null 2>&1 &
SERVER4=$!
PIDS+=("$SERVER4")
ip netns exec "$NS" python3 -m http.server --bind ::1 8001 --directory "$WORK" >/dev/null 2>&1 &
PIDS+=($!)
ip netns exec "$NS" python3 -m http.server --bind 0.0.0.0 8002 --directory "$WORK" >/dev/null 2>&1 &
PIDS+=($!)

fail() {
	echo "FAIL: $*"
	echo "--- agent log"
	cat "$WORK/agent.log"
	exit 1
}
# Reachable within a few scans (1 s each).
wait_for() {
	local url=$1
	for _ in $(seq 100); do
		if out=$(in_ns curl -fsS --max-time 2 "$url" 2>/dev/null); then
			printf '%s' "$out"
			return 0
		fi
		sleep 0.1
	done
	return 1
}
out=$(wait_for http://192.0.2.10:8000/hello.txt) || fail "127.0.0.1:8000 not reachable at 192.0.2.10"
[ "$out" = "hello over loopback" ] || fail "got '$out'"
echo "127.0.0.1:8000 reachable at 192.0.2.10:8000"
out=$(wait_for http://192.0.2.10:8001/hello.txt) || fail "[::1]:8001 not reachable at 192.0.2.10"
[ "$out" = "hello over loopback" ] || fail "got '$out'"
echo "[::1]:8001 reachable at 192.0.2.10:8001"

start=$(date +%s.%N)
in_ns curl -fsS --max-time 60 -o "$WORK/copy.bin" http://192.0.2.10:8000/big.bin ||
	fail "20 MiB download through the forward"
end=$(date +%s.%N)
cmp -s "$WORK/big.bin" "$WORK/copy.bin" || fail "20 MiB body changed in the relay"
echo "20 MiB through the relay intact in $(echo "$end - $start" | bc) s"
# Uploads go the other way (client -> loopback server): python answers 501
# to POST, after reading nothing; a refused connection would be 000.
code=$(in_ns curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
	--data-binary @"$WORK/hello.txt" http://192.0.2.10:8000/) || true
[ "$code" = 501 ] || fail "POST through the forward: HTTP $code"

grep -q "forwarding port 8002" "$WORK/agent.log" && fail "a 0.0.0.0 server was forwarded"
grep -q "forwarding port 49983" "$WORK/agent.log" && fail "the agent's own port was forwarded"

kill "$SERVER4"
wait "$SERVER4" 2>/dev/null || true
# 15 s: on a slow machine this phase may outlast the first minute's 1 s scans
for _ in $(seq 150); do
	grep -q "port 8000: loopback listener gone" "$WORK/agent.log" && break
	sleep 0.1
done
grep -q "port 8000: loopback listener gone" "$WORK/agent.log" || fail "no stop logged"
code=$(in_ns curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://192.0.2.10:8000/) || true
[ "$code" = 000 ] || fail "the forward outlived its server (HTTP $code)"
echo "forward stopped with its server"

# Idle: a fresh agent whose fast-scan window ends after 0.5 s scans at its
# start, once a second later, then every 10 s.
kill "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
ip netns exec "$NS" "$AGENT" --listen 0.0.0.0:49983 --forward-active-ms 500 2>"$WORK/idle.log" &
PIDS+=($!)
for _ in $(seq 50); do
	in_ns curl -fsS --max-time 1 -o /dev/null http://127.0.0.1:49983/health 2>/dev/null && break
	sleep 0.1
done
sleep 2.5
ip netns exec "$NS" python3 -m http.server --bind 127.0.0.1 8003 --directory "$WORK" >/dev/null 2>&1 &
PIDS+=($!)
sleep 3 # the next scan is ~10 s after the agent's start
code=$(in_ns curl -s -o /dev/null -w '%{http_code}' --max-time 1 http://192.0.2.10:8003/hello.txt) || true
[ "$code" = 000 ] || { cat "$WORK/idle.log"; fail "an idle agent forwarded a new port within 3 s (HTTP $code)"; }
in_ns curl -fsS --max-time 5 -o /dev/null -X POST -H 'Content-Type: application/json' -d '{}' \
	http://127.0.0.1:49983/init || fail "/init on the idle agent"
started=$(date +%s.%N)
out=$(wait_for http://192.0.2.10:8003/hello.txt) || { cat "$WORK/idle.log"; fail "no forward after /init"; }
[ "$out" = "hello over loopback" ] || fail "got '$out'"
echo "idle agent: a new port forwarded $(echo "$(date +%s.%N) - $started" | bc) s after /init (not within 3 s before it)"
echo "forward_netns: all passed"
