#!/usr/bin/env bash
# Runs INSIDE the nested test host (run.sh --tap --share): makes it a second
# worker host of the outer machine's stack. Brings eth0 up on the link,
# relays 127.0.0.1:PORT to the outer machine's link address for each PORT
# (PostgreSQL and Kafka, whose advertised address is 127.0.0.1:PORT), mounts
# cgroup2, then runs warren-worker with this environment's WARREN_*
# settings (runtime vm, its own host id, slot range and state dir).
#
# usage: nested-worker.sh SHARE LINK_ADDR/PREFIX PEER_ADDR PORT...
# Talks to the outer test through SHARE (a run.sh --share folder):
#   writes worker.log, forward.log, console-<sandbox>.log (each guest's
#   console, copied every second while it runs); ready ("<uptime s>") once the worker
#   logged "ready:"; status ("vmm=N sandboxes=N") every second while it
#   runs; final ("vmm=N sandboxes=N netns=N exit=N") after it stopped.
#   Stops the worker (SIGTERM) when SHARE/stop appears. On request:
#   SHARE/kill-vmm: SIGKILL every warren-vmm (then kill-vmm.done);
#   SHARE/crash-worker: SIGKILL the worker, start it again (its VMMs are
#   orphans now), then crash-worker.done once it logged "ready:" again.
#   Egress targets: a namespace hvtarget with 198.51.100.2 and .3 (routed
#   via hvtgt0, 198.51.100.1/29 here), each serving HTTP on port 8000
#   ("target <address>"); nothing else is reachable through it.
# Exit: 0 when the worker stopped cleanly and left no VMM, state dir or
# slot namespace; 1 otherwise; 2 on a bad start.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 4 ] || { echo "usage: nested-worker.sh SHARE LINK_ADDR/PREFIX PEER_ADDR PORT..." >&2; exit 2; }
share=$1 link_addr=$2 peer=$3
shift 3
say() { echo "nested-worker: $*"; }
put() { echo "$2" >"$share/$1.tmp" && mv -f "$share/$1.tmp" "$share/$1"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
count_vmm() { pgrep -x warren-vmm | wc -l; }
count_sandboxes() { find "$WARREN_STATE_DIR" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
count_netns() { ip netns list 2>/dev/null | grep -c "^${WARREN_SLOT_NETNS_PREFIX:-none}" ; }

ip link set eth0 up && ip addr add "$link_addr" dev eth0 || { say "eth0 could not be configured"; exit 2; }
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup || { say "no cgroup2"; exit 2; }
mkdir -p "$WARREN_STATE_DIR"

declare -a pairs=()
for port in "$@"; do
	pairs+=("127.0.0.1:$port=$peer:$port")
done
python3 "$here/tcp-forward.py" "${pairs[@]}" >"$share/forward.log" 2>&1 &
forward_pid=$!
for _ in $(seq 1 100); do
	grep -q forwarding "$share/forward.log" 2>/dev/null && break
	kill -0 "$forward_pid" 2>/dev/null || { say "the forwarder exited: $(cat "$share/forward.log")"; exit 2; }
	sleep 0.2
done

# The egress targets: two addresses in a namespace of their own, each
# with a small HTTP server that names itself.
ip netns add hvtarget && ip link add hvtgt0 type veth peer name hvtgt1 &&
	ip link set hvtgt1 netns hvtarget && ip addr add 198.51.100.1/29 dev hvtgt0 &&
	ip link set hvtgt0 up &&
	ip -n hvtarget addr add 198.51.100.2/29 dev hvtgt1 &&
	ip -n hvtarget addr add 198.51.100.3/29 dev hvtgt1 &&
	ip -n hvtarget link set hvtgt1 up && ip -n hvtarget link set lo up ||
	{ say "the egress target namespace could not be made"; exit 2; }
for target in 198.51.100.2 198.51.100.3; do
	mkdir -p "/tmp/target-$target" && echo "target $target" >"/tmp/target-$target/index.html"
	ip netns exec hvtarget python3 -m http.server 8000 --bind "$target" \
		--directory "/tmp/target-$target" >/dev/null 2>&1 &
done

# Starts warren-worker and waits for its Nth "ready:" line (N = $1).
worker_pid=
start_worker() {
	say "worker starts at $(uptime_s) s (host ${WARREN_HOST_ID:-?})"
	"$WARREN_BUILD_DIR/bin/warren-worker" >>"$share/worker.log" 2>&1 &
	worker_pid=$!
	local deadline=$((SECONDS + 300))
	until [ "$(grep -c "ready:" "$share/worker.log" 2>/dev/null)" -ge "$1" ]; do
		if ! kill -0 "$worker_pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
			say "the worker did not get ready:"
			tail -20 "$share/worker.log"
			return 1
		fi
		sleep 0.5
	done
	say "worker ready at $(uptime_s) s"
}
: >"$share/worker.log"
if ! start_worker 1; then
	kill -TERM "$worker_pid" 2>/dev/null
	kill "$forward_pid" 2>/dev/null
	exit 2
fi
put ready "$(uptime_s)"

# Until the outer test says stop (or the worker dies): report what runs.
while [ ! -e "$share/stop" ] && kill -0 "$worker_pid" 2>/dev/null; do
	if [ -e "$share/kill-vmm" ]; then
		say "SIGKILL to every warren-vmm: $(pgrep -x warren-vmm | tr '\n' ' ')"
		pkill -KILL -x warren-vmm
		rm -f "$share/kill-vmm"
		put kill-vmm.done "$(uptime_s)"
	fi
	if [ -e "$share/crash-worker" ]; then
		say "SIGKILL to the worker (pid $worker_pid), VMMs left: $(count_vmm)"
		kill -KILL "$worker_pid"
		wait "$worker_pid" 2>/dev/null
		rm -f "$share/crash-worker"
		start_worker "$(($(grep -c "ready:" "$share/worker.log") + 1))" || break
		put crash-worker.done "$(uptime_s)"
	fi
	put status "vmm=$(count_vmm) sandboxes=$(count_sandboxes)"
	# each guest's console, kept after its sandbox is gone (crng, boot times)
	find "$WARREN_STATE_DIR" -maxdepth 3 -name console.log 2>/dev/null | while read -r console; do
		id=$(echo "${console#"$WARREN_STATE_DIR"/}" | cut -d/ -f1)
		cp "$console" "$share/console-$id.log" 2>/dev/null
	done
	sleep 1
done
kill -TERM "$worker_pid" 2>/dev/null
worker_status=124
for _ in $(seq 1 120); do
	if ! kill -0 "$worker_pid" 2>/dev/null; then
		wait "$worker_pid"
		worker_status=$?
		break
	fi
	sleep 0.5
done
kill "$forward_pid" 2>/dev/null
pkill -f "http.server 8000" 2>/dev/null
ip netns delete hvtarget 2>/dev/null
final="vmm=$(count_vmm) sandboxes=$(count_sandboxes) netns=$(count_netns) exit=$worker_status"
put final "$final"
say "worker stopped: $final"
[ "$final" = "vmm=0 sandboxes=0 netns=0 exit=0" ]
