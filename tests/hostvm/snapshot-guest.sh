#!/usr/bin/env bash
# Runs where KVM works (inside the nested test host, or directly on
# hardware KVM): warren-vmm snapshot -> SIGKILL -> restore of a Linux guest.
#
# The guest (the project's guest kernel, a busybox initramfs made here)
# fills PATTERN MiB of its RAM with random bytes and prints their MD5, then
# every second writes "block-<n>" to sector n%64 of its virtio-blk disk,
# drops its page cache, reads the sector back, checks the MD5 of the
# pattern again and prints "TICK <n> ok" (or "TICK <n> FAIL ...").
# Checks, per guest size (--memory, repeatable):
#   1. boot, wait for TICK 3; pause; snapshot (control socket); SIGKILL;
#   2. the disk holds block-<last n> (the guest's writes reached it);
#   3. a new warren-vmm --restore: the guest goes on (TICK last+1 ok, never
#      FAIL, no second boot), its uptime continues, the VMM answers
#      "state" running;
#   4. (first size only) the restored guest saved and restored again;
#   5. (first size only) refused, exit 125 with a clear reason, never a
#      crash: a flipped byte (checksum), a truncated state file, a short
#      memory file, a restore configured with another memory size.
# Prints "snapshot-figures: ..." lines (sizes, times; TCG: context only).
# usage: snapshot-guest.sh --kernel VMLINUX [--memory MiB]... [--pattern MiB] [--vcpus N]
set -uo pipefail

kernel='' pattern=16 limit=240 vcpus=1
declare -a memories=()
while [ $# -gt 0 ]; do
	case "$1" in
	--kernel) kernel=$2; shift 2 ;;
	--memory) memories+=("$2"); shift 2 ;;
	--pattern) pattern=$2; shift 2 ;;
	--vcpus) vcpus=$2; shift 2 ;;
	--limit) limit=$2; shift 2 ;;
	*) echo "snapshot-guest: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ ${#memories[@]} -gt 0 ] || memories=(128)
[ -r "$kernel" ] || { echo "snapshot-guest: --kernel missing or unreadable" >&2; exit 2; }
vmm=${WARREN_BUILD_DIR:-build}/bin/warren-vmm
[ -x "$vmm" ] || { echo "snapshot-guest: no $vmm" >&2; exit 2; }

work=$(mktemp -d /tmp/vmm-snapshot.XXXXXX)
vmm_pid=
failures=0
cleanup() {
	[ -n "$vmm_pid" ] && kill -KILL "$vmm_pid" 2>/dev/null && wait "$vmm_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# The guest: busybox and an /init doing the pattern loop.
mkdir -p "$work/initramfs/bin"
cp /bin/busybox "$work/initramfs/bin/busybox" || exit 2
cat >"$work/initramfs/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /usr/bin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mib=$(sed -n 's/.*pattern_mib=\([0-9]*\).*/\1/p' /proc/cmdline)
dd if=/dev/urandom of=/pattern bs=1M count="${mib:-16}" 2>/dev/null
sum=$(md5sum /pattern | cut -d' ' -f1)
echo "PATTERN $sum"
i=0
while :; do
	i=$((i + 1))
	want=$(printf 'block-%08d' "$i")
	echo "$want" | dd of=/dev/vda bs=512 seek=$((i % 64)) conv=sync,notrunc 2>/dev/null
	sync
	echo 3 >/proc/sys/vm/drop_caches
	got=$(dd if=/dev/vda bs=512 skip=$((i % 64)) count=1 2>/dev/null | head -c 14)
	now=$(md5sum /pattern | cut -d' ' -f1)
	if [ "$got" = "$want" ] && [ "$now" = "$sum" ]; then
		echo "TICK $i ok up $(cut -d' ' -f1 /proc/uptime)"
	else
		echo "TICK $i FAIL block '$got' sum $now"
	fi
	sleep 1
done
EOF
chmod 755 "$work/initramfs/init"
(cd "$work/initramfs" && find . | cpio -o -H newc --quiet) >"$work/initrd" || exit 2

# ctl SOCKET JSON: one request on the control socket, the reply on stdout.
ctl() {
	python3 - "$1" "$2" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(120)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode().strip())
EOF
}

# wait_for FILE REGEX SECONDS: 0 once FILE has a line matching REGEX.
wait_for() {
	local deadline=$(($(date +%s) + $3))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		[ -n "$vmm_pid" ] && ! kill -0 "$vmm_pid" 2>/dev/null && return 1
		sleep 0.5
	done
	return 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# vmm_args MiB CONSOLE SOCKET: sets args, the command line both runs share.
vmm_args() {
	args=(--kernel "$kernel" --initrd "$work/initrd" --memory "$1" --vcpus "$vcpus" --cpu-profile host
		--cmdline "console=ttyS0 reboot=k panic=-1 tsc=reliable pattern_mib=$pattern"
		--console "$2" --api-socket "$3")
}

# take_snapshot SOCKET PATH: snapshot of the paused VM into reply; while a
# device is busy, the VM runs a moment and is paused again.
take_snapshot() {
	for _ in $(seq 1 50); do
		reply=$(ctl "$1" "{\"op\":\"snapshot\",\"path\":\"$2\"}")
		[[ $reply == *busy* ]] || break
		ctl "$1" '{"op":"resume"}' >/dev/null # let the request finish
		sleep 0.2
		ctl "$1" '{"op":"pause"}' >/dev/null
	done
}

# second_cycle MiB DIR DISK: the restored guest (socket DIR/sock.2) is
# saved again (its memory now a private mapping of the first memory file)
# and restored from that second snapshot.
second_cycle() {
	local mib=$1 dir=$2 disk=$3 last
	ctl "$dir/sock.2" '{"op":"pause"}' >/dev/null
	take_snapshot "$dir/sock.2" "$dir/snap2"
	[[ $reply == *memory_bytes_written* ]] || { fail "$mib MiB: second snapshot: $reply"; return; }
	kill -KILL "$vmm_pid"
	wait "$vmm_pid" 2>/dev/null
	last=$(grep -oE '^TICK [0-9]+ ok' "$dir/console.2" | tail -n 1 | cut -d' ' -f2)
	vmm_args "$mib" "$dir/console.3" "$dir/sock.3"
	"$vmm" "${args[@]}" --device "$disk" --restore "$dir/snap2" >"$dir/vmm.3.log" 2>&1 &
	vmm_pid=$!
	if wait_for "$dir/console.3" "^TICK $((last + 2)) ok" "$limit" &&
		! grep -q 'FAIL\|PATTERN' "$dir/console.3"; then
		echo "second cycle: restored from a snapshot of a restored guest, TICK $last -> $((last + 2)) ok"
	else
		fail "$mib MiB: the guest did not go on after a second snapshot"
		tail -n 20 "$dir/console.3" "$dir/vmm.3.log"
	fi
}

run_size() {
	local mib=$1 dir=$work/m$1 reply last t0 t1 restored_ms uptime_before uptime_after
	mkdir -p "$dir"
	truncate -s 1M "$dir/disk.raw"
	local disk="{\"type\":\"block\",\"path\":\"$dir/disk.raw\"}"
	vmm_args "$mib" "$dir/console.1" "$dir/sock.1"
	"$vmm" "${args[@]}" --device "$disk" \
		>"$dir/vmm.1.log" 2>&1 &
	vmm_pid=$!
	if ! wait_for "$dir/console.1" '^TICK 3 ' "$limit"; then
		fail "$mib MiB: the guest did not reach TICK 3"
		tail -n 20 "$dir/console.1" "$dir/vmm.1.log"
		return
	fi
	grep -q 'FAIL' "$dir/console.1" && fail "$mib MiB: the guest failed before the snapshot"
	reply=$(ctl "$dir/sock.1" '{"op":"pause"}')
	[[ $reply == *'"ok": true'* || $reply == *'"ok":true'* ]] || { fail "pause: $reply"; return; }
	t0=$(now_ms)
	take_snapshot "$dir/sock.1" "$dir/snap"
	t1=$(now_ms)
	echo "snapshot reply: $reply"
	if [[ $reply != *memory_bytes_written* ]]; then
		fail "$mib MiB: snapshot: $reply"
		tail -n 20 "$dir/vmm.1.log"
		return
	fi
	kill -KILL "$vmm_pid"
	wait "$vmm_pid" 2>/dev/null
	vmm_pid=
	last=$(grep -oE '^TICK [0-9]+ ok' "$dir/console.1" | tail -n 1 | cut -d' ' -f2)
	uptime_before=$(grep -E "^TICK $last ok" "$dir/console.1" | awk '{print $5}')
	# the guest's block writes reached the disk file
	if [ "$(dd if="$dir/disk.raw" bs=512 skip=$((last % 64)) count=1 2>/dev/null | head -c 14)" != \
		"$(printf 'block-%08d' "$last")" ]; then
		fail "$mib MiB: disk sector $((last % 64)) does not hold block-$last"
	fi
	echo "snapshot-figures: guest ${mib} MiB: snapshot $(echo "$reply" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("wrote %d of %d bytes of RAM in %d writes, memory %.1f ms, whole op in the VMM %.1f ms"
      % (r["memory_bytes_written"], r["memory_bytes"], r["memory_writes"],
         r["memory_ns"] / 1e6, r["total_ns"] / 1e6))')"
	echo "snapshot-figures: guest ${mib} MiB: snapshot op round trip $((t1 - t0)) ms;" \
		"state file $(stat -c %s "$dir/snap") bytes; memory file $(stat -c %s "$dir/snap.mem")" \
		"bytes, $(($(stat -c %b "$dir/snap.mem") * 512)) allocated"

	t0=$(now_ms)
	vmm_args "$mib" "$dir/console.2" "$dir/sock.2"
	"$vmm" "${args[@]}" --device "$disk" \
		--restore "$dir/snap" >"$dir/vmm.2.log" 2>&1 &
	vmm_pid=$!
	if ! wait_for "$dir/console.2" "^TICK $((last + 1)) " "$limit"; then
		fail "$mib MiB: the restored guest did not go on to TICK $((last + 1))"
		tail -n 20 "$dir/console.2" "$dir/vmm.2.log"
		return
	fi
	t1=$(now_ms)
	wait_for "$dir/console.2" "^TICK $((last + 3)) " 60 || fail "$mib MiB: restored guest stopped"
	grep -E '^TICK' "$dir/console.2" | head -n 3
	grep -q 'FAIL' "$dir/console.2" && fail "$mib MiB: FAIL after the restore"
	grep -q 'PATTERN\|Linux version' "$dir/console.2" && fail "$mib MiB: the guest booted again"
	uptime_after=$(grep -E "^TICK $((last + 1)) ok" "$dir/console.2" | awk '{print $5}')
	awk -v a="$uptime_before" -v b="$uptime_after" 'BEGIN { exit !(b > a && b < a + 60) }' ||
		fail "$mib MiB: guest uptime $uptime_before before, $uptime_after after"
	reply=$(ctl "$dir/sock.2" '{"op":"state"}')
	[[ $reply == *running* ]] || fail "$mib MiB: restored VMM state: $reply"
	restored_ms=$(grep -o 'running [0-9.]* ms' "$dir/vmm.2.log" | awk '{print $2}')
	echo "snapshot-figures: guest ${mib} MiB: restore: VMM start to guest running ${restored_ms:-?} ms;" \
		"to the next TICK on the console $((t1 - t0)) ms; uptime $uptime_before -> $uptime_after s"
	[ "$mib" = "${memories[0]}" ] && second_cycle "$mib" "$dir" "$disk"
	kill -KILL "$vmm_pid"
	wait "$vmm_pid" 2>/dev/null
	vmm_pid=
	[ "$mib" = "${memories[0]}" ] && refusals "$mib" "$dir" "$disk"
}

# refuse NAME EXPECTED-TEXT ARGS...: warren-vmm exits 125 naming the reason.
refuse() {
	local name=$1 expected=$2 status
	shift 2
	timeout 60 "$vmm" "$@" >"$work/refuse.log" 2>&1
	status=$?
	if [ "$status" = 125 ] && grep -q "$expected" "$work/refuse.log"; then
		echo "refused ($name): $(grep -o 'cannot restore.*' "$work/refuse.log" | head -n 1)"
	else
		fail "$name: exit $status, wanted 125 and \"$expected\": $(tail -n 3 "$work/refuse.log")"
	fi
}

refusals() {
	local mib=$1 dir=$2 disk=$3 bad=$work/bad
	cp "$dir/snap" "$bad"
	cp --sparse=always "$dir/snap.mem" "$bad.mem"
	printf '\xff' | dd of="$bad" bs=1 seek=300 conv=notrunc 2>/dev/null
	vmm_args "$mib" "$work/c" "$work/s"
	refuse "flipped byte" "checksum mismatch" "${args[@]}" \
		--device "$disk" --restore "$bad"
	cp "$dir/snap" "$bad"
	truncate -s 1000 "$bad"
	vmm_args "$mib" "$work/c" "$work/s"
	refuse "truncated" "truncated" "${args[@]}" --device "$disk" \
		--restore "$bad"
	cp "$dir/snap" "$bad"
	truncate -s 4096 "$bad.mem"
	vmm_args "$mib" "$work/c" "$work/s"
	refuse "short memory file" "memory file" "${args[@]}" \
		--device "$disk" --restore "$bad"
	vmm_args $((mib * 2)) "$work/c" "$work/s"
	refuse "other memory size" "configured with" "${args[@]}" \
		--device "$disk" --restore "$dir/snap"
	vmm_args "$mib" "$work/c" "$work/s"
	refuse "not a snapshot" "bad magic" "${args[@]}" \
		--device "$disk" --restore "$work/initrd"
}

for mib in "${memories[@]}"; do
	run_size "$mib"
done
echo "snapshot-guest: ${#memories[@]} guest size(s), $failures failure(s)"
[ "$failures" = 0 ]
