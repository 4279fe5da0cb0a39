#!/usr/bin/env bash
# Runs one command inside the nested test host: a QEMU TCG machine with
# emulated AMD SVM, whose kernel (Debian's, from build.sh) gives a real
# /dev/kvm. The nested host sees this machine's / read-only over virtio-9p
# under a tmpfs overlay (so the checkout's build and the system's libraries
# are there at the same paths) and runs the command as root in the current
# directory, with the WARREN_* variables of this environment. The command's
# output streams to stdout (the nested host's serial console).
#
# usage: run.sh [--timeout SECONDS] [--env NAME=VALUE]... [--log FILE]
#               [--tap IFNAME] [--share DIR] -- COMMAND [ARG]...
# --tap: a virtio-net NIC (eth0 inside) on this machine's existing tap IFNAME
#   (the caller creates it, addresses it and removes it; QEMU runs no script).
# --share: DIR (existing) is mounted read-write at the same path inside,
#   without caching, so files written on either side are seen by the other.
# Exit: the command's status; 124 when the timeout killed QEMU (default
# 600 s); 125 when the nested host could not run it (build, boot or mount).
# Env: WARREN_HOSTVM_SMP (default 1), WARREN_HOSTVM_MEMORY_MB (default 3072),
#      WARREN_HOSTVM_APPEND (extra outer kernel parameters).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
timeout_s=600
log_file=
tap=
share=
declare -a extra_env=()
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) timeout_s=$2; shift 2 ;;
	--env) extra_env+=("$2"); shift 2 ;;
	--log) log_file=$2; shift 2 ;;
	--tap) tap=$2; shift 2 ;;
	--share) share=$(cd "$2" && pwd) || exit 125; shift 2 ;;
	--) shift; break ;;
	-*) echo "run.sh: unknown option $1" >&2; exit 125 ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { echo "usage: run.sh [--timeout S] [--env N=V]... [--log FILE] [--tap IF] [--share DIR] -- COMMAND [ARG]..." >&2; exit 125; }

qemu=$(command -v qemu-system-x86_64) || { echo "run.sh: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)" >&2; exit 125; }
artifacts=$("$here/build.sh") || { echo "run.sh: building the nested host failed" >&2; exit 125; }
kernel=$(sed -n 1p <<<"$artifacts")
initrd=$(sed -n 2p <<<"$artifacts")

out=$(mktemp -d /tmp/hostvm-run.XXXXXX) || exit 125
qemu_pid=
cleanup() {
	[ -n "$qemu_pid" ] && kill -KILL "$qemu_pid" 2>/dev/null
	rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The job: same directory, the WARREN_* variables, the extra ones, the command.
{
	echo '#!/bin/bash'
	printf 'export PATH=%q HOME=%q\n' "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "${HOME:-/root}"
	while IFS='=' read -r name _; do
		printf 'export %s=%q\n' "$name" "${!name}"
	done < <(env | grep -E '^(WARREN|CMOCKA|ASAN|UBSAN)_[A-Za-z0-9_]*=' | grep -v '^WARREN_HOSTVM_')
	for pair in "${extra_env[@]+"${extra_env[@]}"}"; do
		printf 'export %s=%q\n' "${pair%%=*}" "${pair#*=}"
	done
	printf 'cd %q || exit 125\n' "$PWD"
	printf 'exec'
	printf ' %q' "$@"
	printf '\n'
} >"$out/job.sh"
chmod 755 "$out/job.sh"

declare -a extra_devices=()
share_param=
if [ -n "$tap" ]; then
	# QEMU's own option syntax: the commas are one argument's separators.
	# shellcheck disable=SC2054
	extra_devices+=(-netdev "tap,id=net0,ifname=$tap,script=no,downscript=no"
		-device virtio-net-pci,netdev=net0,mac=52:54:00:57:0a:02)
fi
if [ -n "$share" ]; then
	# shellcheck disable=SC2054
	extra_devices+=(-fsdev "local,id=hostshare,path=$share,security_model=none,multidevs=remap"
		-device virtio-9p-pci,fsdev=hostshare,mount_tag=hostshare)
	share_param="hostvm.share=$share"
fi

started=$(date +%s.%N)
# -smp 1 by default: TCG runs one host thread per vCPU and CPUs are scarce.
"$qemu" -accel tcg -M q35 -cpu EPYC,+svm,+npt \
	-m "${WARREN_HOSTVM_MEMORY_MB:-3072}" -smp "${WARREN_HOSTVM_SMP:-1}" \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 panic=-1 loglevel=4 hostvm.out=$out $share_param ${WARREN_HOSTVM_APPEND:-}" \
	-nodefaults -display none -monitor "unix:$out/monitor.sock,server=on,wait=off" \
	-serial stdio -no-reboot \
	-object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0 \
	-fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
	-fsdev local,id=hostout,path="$out",security_model=none,multidevs=remap \
	-device virtio-9p-pci,fsdev=hostout,mount_tag=hostout \
	"${extra_devices[@]+"${extra_devices[@]}"}" \
	</dev/null > >(if [ -n "$log_file" ]; then tee "$log_file"; else cat; fi) \
	2> >(grep --line-buffered -v "TCG doesn't support requested feature" >&2) &
qemu_pid=$!

# What the nested host's CPU was doing, asked through QEMU's monitor
# (docs: QEMU's "Monitor" chapter): halted or running, its local APIC
# (a timer that no longer fires), and where it runs, sampled three times
# a second apart (one address: stuck in a loop; none moving and halted:
# waiting for an interrupt that never comes).
dump_cpu_state() {
	python3 - "$out/monitor.sock" <<'PYTHON' >&2 || echo "run.sh: QEMU's monitor did not answer" >&2
import re, socket, sys, time
monitor = socket.socket(socket.AF_UNIX)
monitor.settimeout(5)
monitor.connect(sys.argv[1])
def answer():
    data = b""
    while not data.endswith(b"(qemu) "):
        chunk = monitor.recv(65536)
        if not chunk:
            break
        data += chunk
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", data.decode(errors="replace"))
    return text.split("\n", 1)[-1].replace("(qemu) ", "").strip()  # less the echo
answer()
for i, command in enumerate(["info cpus", "info lapic", "info registers", "info registers",
                             "info registers"]):
    if i > 2:
        time.sleep(1)
    monitor.sendall(command.encode() + b"\n")
    lines = answer().splitlines()
    if command == "info registers":  # the general registers; RIP alone when sampling again
        lines = [l for l in lines if re.match(r"(R..|RIP|CS |CR0|EFER)", l)]
        lines = [l for l in lines if l.startswith("RIP")] if i > 2 else lines
    print("run.sh: monitor: %s\n%s" % (command, "\n".join(lines)))
PYTHON
}

# Bounded: QEMU is killed when the timeout passes; never hangs.
deadline=$((SECONDS + timeout_s))
while kill -0 "$qemu_pid" 2>/dev/null; do
	if [ $SECONDS -ge $deadline ]; then
		echo "run.sh: timeout after ${timeout_s} s: the nested host's CPU, then killing it" >&2
		dump_cpu_state
		kill -KILL "$qemu_pid" 2>/dev/null
		wait "$qemu_pid" 2>/dev/null
		qemu_pid=
		exit 124
	fi
	sleep 1
done
wait "$qemu_pid"
qemu_status=$?
qemu_pid=
elapsed=$(echo "$(date +%s.%N) - $started" | bc)
if [ ! -f "$out/status" ]; then
	echo "run.sh: the nested host stopped without a status (QEMU exit $qemu_status, ${elapsed} s)" >&2
	exit 125
fi
status=$(cat "$out/status")
echo "run.sh: nested host done in ${elapsed} s, command exit $status" >&2
[[ $status =~ ^[0-9]+$ ]] || exit 125
exit "$status"
