#!/usr/bin/env bash
# ctest entry and manual driver: the nested test host joins this machine's
# warren stack as a second worker host with the vm runtime, and the npm e2b
# SDK creates, uses and kills a sandbox placed on it (tests/hostvm/e2e_vm.py
# has the steps). Needs root, QEMU, the built binaries, the cached minimal
# template and the SDK, and a dev stack (WARREN_PG_URL, WARREN_KAFKA_BROKERS).
#
# usage: e2e-vm.sh          (from the build directory, or with WARREN_BUILD_DIR)
# Exit: 0 pass, 1 fail, 77 skip with the reason.
# Env: WARREN_HOSTVM_E2E_TIMEOUT (the nested host's run.sh timeout, 780 s),
#      WARREN_GUEST_KERNEL (else guest/kernel/build.sh), WARREN_TEMPLATES_DIR,
#      WARREN_KEEP_TEST_DIR=1 keeps the work folder (nested console, worker log).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export WARREN_SOURCE_DIR=${WARREN_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
export WARREN_BUILD_DIR=${WARREN_BUILD_DIR:-$PWD}
exec python3 "$here/e2e_vm.py"
