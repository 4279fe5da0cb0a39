#!/usr/bin/env bash
# ctest wrapper: runs one KVM test binary inside the nested test host (run.sh)
# when this machine has no usable KVM, so VMM tests run instead of being
# skipped. "No usable KVM": /dev/kvm cannot be opened, or the CPU flags show
# neither vmx nor svm (a kvm_pvm host: its guests cannot run user space).
#
# usage: nested-test.sh [--timeout SECONDS] TEST_BINARY [ARG]...
# Exit: the test's own status (0 pass, 77 skipped inside); 77 with a reason
# when the nested host is not needed (hardware KVM here: the direct ctest
# entry runs the test) or cannot be had (no QEMU, build failed); 1 when the
# nested host ran but the test timed out or the host did not come up.
# Env: WARREN_GUEST_KERNEL (resolved here via guest/kernel/build.sh when
# unset, so no kernel is ever built inside TCG), WARREN_SOURCE_DIR.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source_dir=${WARREN_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
timeout_s=480
if [ "${1:-}" = --timeout ]; then
	timeout_s=$2
	shift 2
fi
[ $# -gt 0 ] || { echo "usage: nested-test.sh [--timeout S] TEST_BINARY [ARG]..." >&2; exit 2; }
name=$(basename "$1")

# shellcheck source=tests/hostvm/probe.sh
source "$here/probe.sh"
if hostvm_probe; then
	echo "SKIP: this machine has hardware KVM; $name runs directly (its own ctest entry)"
	exit 77
fi
echo "$hostvm_reason: running $name in the nested test host (QEMU TCG with emulated SVM)"
command -v qemu-system-x86_64 >/dev/null ||
	{ echo "SKIP: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"; exit 77; }
if ! "$here/build.sh" >/dev/null; then
	echo "SKIP: the nested host's kernel and initramfs could not be built (see above)"
	exit 77
fi

declare -a env_args=()
if { [ "$name" = test_vmm_linux ] || [ "$name" = test_worker_runtime_vm ]; } &&
	[ -z "${WARREN_GUEST_KERNEL:-}" ]; then
	if kernel=$("$source_dir/guest/kernel/build.sh"); then
		env_args=(--env "WARREN_GUEST_KERNEL=$kernel")
	else
		echo "FAIL: no guest kernel (guest/kernel/build.sh failed)"
		exit 1
	fi
fi

declare -a command=("$@")
if [ "$name" = test_worker_runtime_vm ]; then
	# the worker puts each jailed VMM in a cgroup: cgroup2 as on a worker host
	# shellcheck disable=SC2016 # $@ is expanded by the inner shell
	command=(sh -c 'mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup; exec "$@"' sh "$@")
fi

started=$SECONDS
"$here/run.sh" --timeout "$timeout_s" "${env_args[@]+"${env_args[@]}"}" -- "${command[@]}"
status=$?
echo "nested-test: $name exit $status after $((SECONDS - started)) s (nested host boot included)"
case $status in
124) echo "FAIL: $name did not finish within $timeout_s s in the nested host"; exit 1 ;;
125) echo "FAIL: the nested host did not run $name (boot or mount failed; see the console above)"; exit 1 ;;
esac
exit "$status"
