#!/bin/sh
# Builds warren's guest kernel (uncompressed vmlinux, entered in 64-bit mode
# by warren-vmm) from Debian's linux-source package: tinyconfig + the
# checked-in config-fragment + patches/*.patch. Cached by content hash under
# ${XDG_CACHE_HOME:-$HOME/.cache}/warren/kernel/<hash>/vmlinux; prints that
# path on stdout (everything else goes to stderr). A second run with the
# same inputs returns at once.
#
# Environment: WARREN_KERNEL_JOBS (default 2), WARREN_KERNEL_SOURCE (a
# linux-source-*.tar.xz to use instead of the newest in /usr/src).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
jobs=${WARREN_KERNEL_JOBS:-2}
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/warren/kernel

# Debian 12 ships linux-source-6.1, Debian 13 linux-source-6.12.
tarball=${WARREN_KERNEL_SOURCE:-$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
	echo "guest/kernel/build.sh: no /usr/src/linux-source-*.tar.xz (apt-get install linux-source)" >&2
	exit 1
fi

hash=$( {
	printf '%s %s\n' "$(basename "$tarball")" "$(stat -c %s "$tarball")"
	cat "$here/config-fragment" "$here/build.sh"
	for patch in "$here"/patches/*.patch; do
		[ -f "$patch" ] && { echo "$patch" | sed 's|.*/||'; cat "$patch"; }
	done
} | sha256sum | cut -c1-16)
out=$cache_root/$hash
if [ -f "$out/vmlinux" ]; then
	echo "$out/vmlinux"
	exit 0
fi

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "building guest kernel from $(basename "$tarball") in $work (-j$jobs)" >&2
tar -xf "$tarball" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n 1)
cd "$src"
for patch in "$here"/patches/*.patch; do
	[ -f "$patch" ] || continue
	echo "applying $(basename "$patch")" >&2
	patch -p1 -F3 --no-backup-if-mismatch < "$patch" >&2
done
make -s tinyconfig >&2
./scripts/kconfig/merge_config.sh -m .config "$here/config-fragment" >&2
make -s olddefconfig >&2
# Every option the fragment asks for must have survived olddefconfig.
missing=0
grep '^CONFIG_' "$here/config-fragment" | while IFS= read -r line; do
	grep -qx "$line" .config || { echo "warning: $line did not stick" >&2; }
done
grep -q '^CONFIG_PTP_1588_CLOCK_KVM=y' .config && { echo "PTP_1588_CLOCK_KVM must be off" >&2; missing=1; }
grep -q '^CONFIG_PCI=y' .config && { echo "PCI must be off" >&2; missing=1; }
[ "$missing" = 0 ] || exit 1
make -s -j"$jobs" vmlinux >&2
mkdir -p "$out.tmp"
cp vmlinux "$out.tmp/vmlinux"
cp .config "$out.tmp/config"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out/vmlinux"
