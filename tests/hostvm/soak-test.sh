#!/usr/bin/env bash
# ctest entry: a few consecutive guest boots of the `minimal` template, each
# to the agent's /health (guest-soak.sh --agent). Directly on a machine with
# hardware KVM, inside the nested test host otherwise.
#
# usage: soak-test.sh [--timeout SECONDS] [--count N]
# Exit: 0 when every boot reached /health; 1 when one hung or failed, or the
# nested host timed out; 77 with the reason when it cannot run here (not
# root, no QEMU, no template, the nested host cannot be built).
# Env: WARREN_TEMPLATES_DIR (default ~/.cache/warren/test-templates),
#      WARREN_GUEST_KERNEL (else guest/kernel/build.sh), WARREN_BUILD_DIR.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source_dir=${WARREN_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
timeout_s=420 count=3
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) timeout_s=$2; shift 2 ;;
	--count) count=$2; shift 2 ;;
	*) echo "usage: soak-test.sh [--timeout S] [--count N]" >&2; exit 2 ;;
	esac
done
export WARREN_BUILD_DIR=${WARREN_BUILD_DIR:-$PWD}

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (a tap for the guest)"; exit 77; }
templates=${WARREN_TEMPLATES_DIR:-${WARREN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/warren}/test-templates}
# The real path: inside the nested host /tmp is its own tmpfs.
rootfs=$(readlink -f "$templates/minimal/rootfs.ext4" 2>/dev/null)
[ -n "$rootfs" ] && [ -r "$rootfs" ] ||
	{ echo "SKIP: no minimal template in $templates (scripts/test builds it)"; exit 77; }
kernel=${WARREN_GUEST_KERNEL:-}
if [ -z "$kernel" ]; then
	kernel=$("$source_dir/guest/kernel/build.sh") || { echo "FAIL: no guest kernel (guest/kernel/build.sh failed)"; exit 1; }
fi
soak=("$here/guest-soak.sh" --kernel "$kernel" --rootfs "$rootfs" --count "$count" --limit 90 --agent --stop-on-failure)

# shellcheck source=tests/hostvm/probe.sh
source "$here/probe.sh"
if hostvm_probe; then
	echo "hardware KVM: $count boots directly"
	exec timeout -k 10 "$timeout_s" "${soak[@]}"
fi
echo "$hostvm_reason: $count boots in the nested test host"
command -v qemu-system-x86_64 >/dev/null ||
	{ echo "SKIP: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"; exit 77; }
"$here/build.sh" >/dev/null || { echo "SKIP: the nested host's kernel and initramfs could not be built"; exit 77; }
"$here/run.sh" --timeout "$timeout_s" -- "${soak[@]}"
status=$?
case $status in
0) exit 0 ;;
124) echo "FAIL: the soak did not finish within $timeout_s s" ;;
125) echo "FAIL: the nested host did not run the soak (see the console above)" ;;
*) echo "FAIL: guest-soak exit $status" ;;
esac
exit 1
