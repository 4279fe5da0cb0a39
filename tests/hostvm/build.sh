#!/usr/bin/env bash
# Builds the nested test host's outer kernel and initramfs from Debian
# packages only: the release's linux-image-<version>-amd64 (6.1 on Debian 12,
# 6.12 on Debian 13), fetched with `apt-get download` and unpacked
# with `dpkg-deb -x` (never installed), and busybox-static. Cached by content
# under ${WARREN_CACHE_DIR:-~/.cache/warren}/hostvm/<hash>/ (the hash covers
# this script, init, the image package's version and busybox's version).
# Prints two lines on stdout: the kernel path, then the initramfs path.
# Everything else goes to stderr. Exit 1 when a package cannot be had.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${WARREN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/warren}/hostvm
log() { echo "hostvm/build.sh: $*" >&2; }

# Modules the nested host loads, in an order that satisfies their
# dependencies once build.sh has added those (resolved from .modinfo below).
# The second line: a network link to the outer machine and what
# warren-worker's slots need (veth, nftables with NAT, conntrack, fib, reject,
# ct count, named counters), for e2e-vm.sh's nested worker host. crc32c_generic first:
# libcrc32c (under nf_tables) asks the crypto API for "crc32c" at load time
# (a soft dependency, not in .modinfo's depends).
wanted_modules="tun irqbypass kvm ccp kvm-amd virtio_pci virtio_rng 9pnet 9pnet_virtio 9p overlay
	virtio_net veth crc32c_generic nf_tables nft_ct nft_nat nft_masq nft_chain_nat nft_fib_inet nft_fib_ipv4
	nft_fib_ipv6 nft_reject_inet nft_connlimit nft_objref nft_limit nft_quota"

# The release's own kernel: what its metapackage linux-image-amd64 depends
# on (6.1.0-NN-amd64 on Debian 12, 6.12.NN+deb13-amd64 on Debian 13; not a
# backport), else the newest plain image package apt knows.
pick_image_package() {
	local pkg
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[^ ]*-amd64\(-unsigned\)\{0,1\}\)$/\1/p' | head -n 1)
	if [ -z "$pkg" ]; then
		pkg=$(apt-cache search --names-only '^linux-image-[0-9][0-9a-z.+-]*[0-9]-amd64(-unsigned)?$' 2>/dev/null |
			awk '{print $1}' | sort -V | tail -n 1)
	fi
	echo "$pkg"
}

image_pkg=${WARREN_HOSTVM_IMAGE_PACKAGE:-$(pick_image_package)}
if [ -z "$image_pkg" ]; then
	# No apt lists (offline, cleaned): the newest complete earlier build.
	previous=$(ls -td "$cache_root"/*/initrd.gz 2>/dev/null | head -n 1)
	[ -n "$previous" ] || { log "no linux-image-*-amd64 package in apt's lists (apt-get update?)"; exit 1; }
	log "no image package in apt's lists: using the cached $(dirname "$previous")"
	echo "$(dirname "$previous")/vmlinuz"
	echo "$previous"
	exit 0
fi
image_version=$(apt-cache policy "$image_pkg" | awk '/Candidate:/ {print $2}')
# busybox-static's /bin/busybox: ldd refuses a static binary.
busybox=/bin/busybox
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
	log "needs a static /bin/busybox (apt-get install busybox-static)"
	exit 1
fi
busybox_version=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || echo unknown)

hash=$( {
	echo "$image_pkg $image_version busybox $busybox_version $wanted_modules"
	cat "$here/build.sh" "$here/init"
} | sha256sum | cut -c1-16)
out=$cache_root/$hash
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.gz" ]; then
	echo "$out/vmlinuz"
	echo "$out/initrd.gz"
	exit 0
fi

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building in $work from $image_pkg $image_version"
(cd "$work" && apt-get -q -o APT::Sandbox::User=root download "$image_pkg" >&2) || { log "apt-get download $image_pkg failed"; exit 1; }
dpkg-deb -x "$work"/*.deb "$work/image"
modroot=$(find "$work/image/lib/modules" "$work/image/usr/lib/modules" -mindepth 1 -maxdepth 1 \
	-type d 2>/dev/null | head -n 1 || true)
[ -n "$modroot" ] || { log "no lib/modules in $image_pkg"; exit 1; }
kernel=$(ls "$work"/image/boot/vmlinuz-* | head -n 1)

# A module's file (plain, .xz or .zst) by name; '-' and '_' are the same.
module_file() {
	local pattern
	pattern=$(echo "$1" | sed 's/[-_]/[-_]/g')
	find "$modroot" -regextype posix-extended -regex ".*/${pattern}\.ko(\.xz|\.zst)?" | head -n 1
}
# The uncompressed module at $2.
module_unpack() {
	case "$1" in
	*.xz) xz -dc "$1" >"$2" ;;
	*.zst) zstd -qdc "$1" >"$2" ;;
	*) cp "$1" "$2" ;;
	esac
}
module_depends() {
	objcopy -O binary --only-section=.modinfo "$1" /dev/stdout 2>/dev/null | tr '\0' '\n' |
		sed -n 's/^depends=//p' | tr ',' ' '
}

root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,mnt,newroot,lib/modules}
cp "$busybox" "$root/bin/busybox"
cp "$here/init" "$root/init"
chmod 755 "$root/init"
order=""
# Depth-first: dependencies land in $order before the module itself.
add_module() {
	local name=$1 file dep
	case " $order " in *" $name "*) return 0 ;; esac
	file=$(module_file "$name")
	if [ -z "$file" ]; then
		# Built into this kernel (modules.builtin) or absent: nothing to load.
		grep -qE "/${name//[-_]/[-_]}\.ko" "$modroot/modules.builtin" 2>/dev/null ||
			log "note: module $name not found (assumed built in)"
		return 0
	fi
	module_unpack "$file" "$root/lib/modules/$name.ko"
	for dep in $(module_depends "$root/lib/modules/$name.ko"); do
		add_module "$dep"
	done
	order="$order $name"
}
for module in $wanted_modules; do
	add_module "$module"
done
echo "$order" >"$root/lib/modules/order"
log "modules:$order"

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"
mkdir -p "$out.tmp"
cp "$kernel" "$out.tmp/vmlinuz"
cp "$work/initrd.gz" "$out.tmp/initrd.gz"
cp "$work"/image/boot/config-* "$out.tmp/"
echo "$image_pkg $image_version" >"$out.tmp/source"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out/vmlinuz"
echo "$out/initrd.gz"
