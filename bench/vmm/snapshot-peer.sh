#!/usr/bin/env bash
# The peer for warren-vmm's snapshot figures (docs/vmm-snapshot.md): QEMU
# (-M microvm, KVM) saves a guest with `stop` + `migrate` to a file and
# starts it again with -incoming from that file. Runs where KVM works
# (inside the nested test host: tests/hostvm/run.sh -- bench/vmm/snapshot-peer.sh ...).
#
# The guest: KERNEL (a bzImage: QEMU does not boot the project's plain
# vmlinux) with a busybox initramfs that fills PATTERN MiB of RAM with
# random bytes and prints "TICK <n> ok" every second while their MD5 holds
# (the memory part of tests/hostvm/snapshot-guest.sh). Prints
# "peer-figures: ..." per guest size.
# usage: snapshot-peer.sh --kernel BZIMAGE [--memory MiB]... [--pattern MiB]
set -uo pipefail

kernel='' pattern=16
declare -a memories=()
while [ $# -gt 0 ]; do
	case "$1" in
	--kernel) kernel=$2; shift 2 ;;
	--memory) memories+=("$2"); shift 2 ;;
	--pattern) pattern=$2; shift 2 ;;
	*) echo "snapshot-peer: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ ${#memories[@]} -gt 0 ] || memories=(128)
[ -r "$kernel" ] || { echo "snapshot-peer: --kernel missing" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "snapshot-peer: no QEMU" >&2; exit 2; }

work=$(mktemp -d /tmp/snapshot-peer.XXXXXX)
qemu_pid=
cleanup() {
	[ -n "$qemu_pid" ] && kill -KILL "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/initramfs/bin"
cp /bin/busybox "$work/initramfs/bin/busybox" || exit 2
cat >"$work/initramfs/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /usr/bin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mib=$(sed -n 's/.*pattern_mib=\([0-9]*\).*/\1/p' /proc/cmdline)
dd if=/dev/urandom of=/pattern bs=1M count="${mib:-16}" 2>/dev/null
sum=$(md5sum /pattern | cut -d' ' -f1)
i=0
while :; do
	i=$((i + 1))
	[ "$(md5sum /pattern | cut -d' ' -f1)" = "$sum" ] && echo "TICK $i ok" || echo "TICK $i FAIL"
	sleep 1
done
EOF
chmod 755 "$work/initramfs/init"
(cd "$work/initramfs" && find . | cpio -o -H newc --quiet) >"$work/initrd" || exit 2

# qmp SOCKET COMMAND...: each a JSON command; "wait-migrate" polls
# query-migrate until it completes. Prints the last reply.
qmp() {
	python3 - "$@" <<'EOF'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
for _ in range(200):
    try:
        s.connect(sys.argv[1])
        break
    except OSError:
        time.sleep(0.05)
f = s.makefile("rw")
json.loads(f.readline())  # greeting
def call(command):
    f.write(json.dumps(command) + "\n"); f.flush()
    while True:
        reply = json.loads(f.readline())
        if "return" in reply or "error" in reply:
            return reply
call({"execute": "qmp_capabilities"})
reply = None
for arg in sys.argv[2:]:
    if arg == "wait-migrate":
        while True:
            reply = call({"execute": "query-migrate"})
            if reply["return"].get("status") in ("completed", "failed"):
                break
            time.sleep(0.01)
    else:
        reply = call(json.loads(arg))
print(json.dumps(reply))
EOF
}

wait_for() {
	local deadline=$(($(date +%s) + $3))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

start_qemu() { # MiB CONSOLE SOCKET [extra...]
	local mib=$1 console=$2 sock=$3
	shift 3
	qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=off -enable-kvm -cpu host -m "$mib" \
		-nodefaults -no-user-config -display none -kernel "$kernel" -initrd "$work/initrd" \
		-append "console=ttyS0 reboot=k panic=-1 pattern_mib=$pattern" \
		-serial "file:$console" -qmp "unix:$sock,server=on,wait=off" "$@" \
		>"$console.qemu" 2>&1 &
	qemu_pid=$!
}

for mib in "${memories[@]}"; do
	dir=$work/m$mib
	mkdir -p "$dir"
	start_qemu "$mib" "$dir/console.1" "$dir/qmp.1"
	wait_for "$dir/console.1" '^TICK 3 ' 240 || { echo "peer: no TICK 3"; tail "$dir/console.1" "$dir/console.1.qemu"; exit 1; }
	t0=$(now_ms)
	reply=$(qmp "$dir/qmp.1" '{"execute":"stop"}' \
		"{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat > $dir/state\"}}" wait-migrate)
	t1=$(now_ms)
	echo "peer: $reply"
	last=$(grep -oE '^TICK [0-9]+ ok' "$dir/console.1" | tail -n 1 | cut -d' ' -f2)
	kill -KILL "$qemu_pid"; wait "$qemu_pid" 2>/dev/null; qemu_pid=
	echo "peer-figures: QEMU guest ${mib} MiB: stop+migrate to file $((t1 - t0)) ms;" \
		"file $(stat -c %s "$dir/state") bytes"
	t0=$(now_ms)
	start_qemu "$mib" "$dir/console.2" "$dir/qmp.2" -incoming "exec:cat $dir/state"
	# QEMU starts the guest itself once the incoming migration finished
	for _ in $(seq 1 600); do
		status=$(qmp "$dir/qmp.2" '{"execute":"query-status"}')
		[[ $status == *'"postmigrate"'* || $status == *'"paused"'* ]] && break
		[[ $status == *'"running"'* ]] && break
		sleep 0.05
	done
	qmp "$dir/qmp.2" '{"execute":"cont"}' >/dev/null
	t1=$(now_ms)
	if wait_for "$dir/console.2" "^TICK $((last + 1)) ok" 120; then
		t2=$(now_ms)
		echo "peer-figures: QEMU guest ${mib} MiB: restore (start with -incoming to cont) $((t1 - t0)) ms;" \
			"to the next TICK $((t2 - t0)) ms"
	else
		echo "peer: the restored guest did not go on"; tail "$dir/console.2" "$dir/console.2.qemu"
	fi
	kill -KILL "$qemu_pid"; wait "$qemu_pid" 2>/dev/null; qemu_pid=
done
