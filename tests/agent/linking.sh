#!/usr/bin/env bash
# unit (labels unit, agent): the agent built from the archives loads libc
# alone (no libmicrohttpd, GnuTLS, p11-kit, unistring or ffi at run time),
# carries no GnuTLS code (no_tls.c stands in for it) and starts.
# usage: linking.sh AGENT ARCHIVE_BUILD(ON|OFF)
set -uo pipefail
agent=$1 archive_build=${2:-OFF}
[ "$archive_build" = ON ] ||
	{ echo "SKIP: this build links the shared libraries (sanitizers, or an archive missing)"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
libraries=$(ldd "$agent" | awk '{ print $1 }' | grep -v -E '^(linux-vdso\.so\.1|libc\.so\.6|/lib64/ld-linux-x86-64\.so\.2)$')
[ -z "$libraries" ] || fail "the agent loads more than libc: $libraries"
grep -a -q 'TLS is not built into warren-agent' "$agent" || fail "no_tls.c is not linked in"
if [ "$(nm "$agent" 2>/dev/null | grep -c -E ' T (_gnutls_|gnutls_x509_|nettle_)')" != 0 ]; then
	fail "GnuTLS or nettle code is linked in"
fi
version=$("$agent" --version) || fail "warren-agent --version failed"
echo "agent links libc alone, no TLS: $version"
