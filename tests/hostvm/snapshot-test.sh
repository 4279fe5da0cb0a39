#!/usr/bin/env bash
# ctest entry: warren-vmm snapshot -> SIGKILL -> restore of a Linux guest,
# and corrupt snapshots refused (snapshot-guest.sh). Directly on a machine
# with hardware KVM, inside the nested test host otherwise.
#
# usage: snapshot-test.sh [--timeout SECONDS] [--memory MiB]...
# Exit: 0 when every check passed; 1 otherwise (or the nested host timed
# out); 77 with the reason when it cannot run here (no QEMU, the nested
# host cannot be built).
# Env: WARREN_GUEST_KERNEL (else guest/kernel/build.sh), WARREN_BUILD_DIR.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source_dir=${WARREN_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
timeout_s=540
declare -a memories=()
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) timeout_s=$2; shift 2 ;;
	--memory) memories+=(--memory "$2"); shift 2 ;;
	*) echo "usage: snapshot-test.sh [--timeout S] [--memory MiB]..." >&2; exit 2 ;;
	esac
done
export WARREN_BUILD_DIR=${WARREN_BUILD_DIR:-$PWD}

kernel=${WARREN_GUEST_KERNEL:-}
if [ -z "$kernel" ]; then
	kernel=$("$source_dir/guest/kernel/build.sh") || { echo "FAIL: no guest kernel (guest/kernel/build.sh failed)"; exit 1; }
fi
inner=("$here/snapshot-guest.sh" --kernel "$kernel" "${memories[@]+"${memories[@]}"}")

# shellcheck source=tests/hostvm/probe.sh
source "$here/probe.sh"
if hostvm_probe; then
	echo "hardware KVM: directly"
	exec timeout -k 10 "$timeout_s" "${inner[@]}"
fi
echo "$hostvm_reason: in the nested test host"
command -v qemu-system-x86_64 >/dev/null ||
	{ echo "SKIP: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"; exit 77; }
"$here/build.sh" >/dev/null || { echo "SKIP: the nested host's kernel and initramfs could not be built"; exit 77; }
"$here/run.sh" --timeout "$timeout_s" -- "${inner[@]}"
status=$?
case $status in
0) exit 0 ;;
124) echo "FAIL: the snapshot test did not finish within $timeout_s s" ;;
125) echo "FAIL: the nested host did not run the test (see the console above)" ;;
*) echo "FAIL: snapshot-guest exit $status" ;;
esac
exit 1
