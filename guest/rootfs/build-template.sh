#!/bin/bash
# build-template.sh: builds a warren template (a root filesystem) and
# installs it. See guest/rootfs/README.md.
#
#   build-template.sh --name minimal|base|code-interpreter-v1 [--agent PATH]
#                     [--interpreter PATH] [--force]
#                     [--cache-dir DIR] [--templates-dir DIR]
#
# Output, in the cache entry CACHE_DIR/<name>-<hash>/:
#   rootfs/        the directory tree (the jail runtime's overlay lower)
#   rootfs.ext4    the same tree as an ext4 image (the VM runtime's root disk)
#   template.json  {name, agent_version, content_hash, built_at, size, ...}
# and TEMPLATES_DIR/<name> -> that entry (a symlink, replaced atomically).
#
# The hash is a sha256 over this script, the template name, the agent
# binary's bytes, the busybox binary's bytes and, for `base` and
# `code-interpreter-v1`, the suite, mirror and package list (and the
# interpreter binary's bytes for the latter). Same inputs -> the entry exists -> no-op.
set -euo pipefail
# The tree must be readable by the sandbox's unprivileged user whatever
# the caller's umask is.
umask 022

name=""
agent="${WARREN_AGENT_BINARY:-}"
force=0
cache_dir="${WARREN_TEMPLATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/warren/templates}"
templates_dir="${WARREN_TEMPLATES_DIR:-/var/lib/warren/templates}"
busybox=/bin/busybox
base_packages="busybox python3 curl ca-certificates"
# code-interpreter-v1: base + Jupyter's Python kernel and the data stack.
interpreter_packages="python3-ipykernel python3-numpy python3-pandas python3-matplotlib"
interpreter="${WARREN_INTERPRETER_BINARY:-}"

die() { echo "build-template: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--name) name="$2"; shift 2 ;;
	--agent) agent="$2"; shift 2 ;;
	--interpreter) interpreter="$2"; shift 2 ;;
	--force) force=1; shift ;;
	--cache-dir) cache_dir="$2"; shift 2 ;;
	--templates-dir) templates_dir="$2"; shift 2 ;;
	*) die "unknown argument: $1" ;;
	esac
done

case "$name" in
minimal|base|code-interpreter-v1) ;;
*) die "--name must be minimal, base or code-interpreter-v1 (got '$name')" ;;
esac
# code-interpreter-v1: a Debian tree (like base) with more packages and
# warren-interpreter (default: next to the agent binary).
debian=0
packages="$base_packages"
if [ "$name" = base ] || [ "$name" = code-interpreter-v1 ]; then debian=1; fi
if [ "$name" = code-interpreter-v1 ]; then
	packages="$base_packages $interpreter_packages"
	if [ -z "$interpreter" ] && [ -n "$agent" ]; then
		interpreter="$(dirname "$agent")/warren-interpreter"
	fi
	[ -n "$interpreter" ] && [ -x "$interpreter" ] ||
		die "code-interpreter-v1 needs --interpreter PATH (warren-interpreter; built when libzmq3-dev is installed)"
	[ -n "$agent" ] || die "code-interpreter-v1 needs --agent PATH"
	# The kernels' IPython start-up file (matplotlib charts as data).
	interpreter_startup="$(dirname "$(readlink -f "$0")")/../interpreter/ipython_startup.py"
	[ -f "$interpreter_startup" ] || die "$interpreter_startup missing"
else
	interpreter=""
fi
[ -x "$busybox" ] || die "$busybox missing (Debian package busybox-static)"
if [ -n "$agent" ] && [ ! -x "$agent" ]; then
	die "agent binary $agent is not an executable file"
fi

# The suite and mirror of the host (base only): /etc/os-release and the
# first Debian URI of the apt sources (deb822 .sources or one-line lists).
suite=""
mirror=""
if [ "$debian" = 1 ]; then
	suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$suite" ] || die "no VERSION_CODENAME in /etc/os-release"
	mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^URIs:/ && $2 ~ /debian\/?$/ && $2 !~ /security/ { print $2; exit }')
	if [ -z "$mirror" ]; then
		mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { if ($i ~ /debian\/?$/ && $i !~ /security/) { print $i; exit } break } }')
	fi
	[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d}"
fi

# Content hash: the cache key.
script_self="$(readlink -f "$0")"
hash=$({
	echo "warren-template-v1 $name"
	sha256sum < "$script_self"
	if [ -n "$agent" ]; then sha256sum < "$agent"; else echo "no-agent"; fi
	sha256sum < "$busybox"
	if [ -n "$interpreter" ]; then
		sha256sum < "$interpreter"
		sha256sum < "$interpreter_startup"
	fi
	if [ "$name" = code-interpreter-v1 ]; then
		echo "suite=$suite mirror=$mirror packages=$packages"
	else
		echo "suite=$suite mirror=$mirror packages=$base_packages"
	fi
} | sha256sum | cut -c1-64)
short="${hash:0:16}"
entry="$cache_dir/$name-$short"

install_link() {
	mkdir -p "$templates_dir"
	ln -sfn "$entry" "$templates_dir/.$name.tmp.$$"
	mv -Tf "$templates_dir/.$name.tmp.$$" "$templates_dir/$name"
}

if [ -f "$entry/template.json" ] && [ "$force" = 0 ]; then
	install_link
	echo "template $name: cached ($entry)"
	exit 0
fi

mkdir -p "$cache_dir"
work=$(mktemp -d "$cache_dir/.build-$name-XXXXXX")
chmod 0755 "$work"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"

agent_version="none"
if [ -n "$agent" ]; then
	agent_version=$("$agent" --version 2>/dev/null | head -n1 | awk '{ print $NF }')
	[ -n "$agent_version" ] || die "$agent --version printed nothing"
fi

# Copies a host file to the same path in the rootfs (resolving symlinks),
# unless the rootfs already has it (base: Debian's own libraries).
copy_host_file() {
	local src="$1"
	[ -e "$root$src" ] && return 0
	mkdir -p "$root$(dirname "$src")"
	cp -L "$src" "$root$src"
}

# --- the tree ---------------------------------------------------------
if [ "$debian" = 1 ]; then
	# The Debian tree is its own cache stage, keyed by suite, mirror and
	# packages only: a new agent binary re-runs the cheap layer below,
	# not debootstrap (minutes).
	command -v debootstrap >/dev/null || die "debootstrap missing"
	stage_key=$(echo "debootstrap-v1 suite=$suite mirror=$mirror packages=$base_packages" |
		sha256sum | cut -c1-16)
	stage="$cache_dir/debootstrap-$stage_key"
	if [ ! -f "$stage/.complete" ]; then
		rm -rf "$stage.tmp"
		mkdir -p "$stage.tmp/rootfs"
		debootstrap --variant=minbase --include="${base_packages// /,}" \
			"$suite" "$stage.tmp/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
			{ tail -n 30 "$work/debootstrap.log" >&2; rm -rf "$stage.tmp"; die "debootstrap failed"; }
		rm -rf "$stage.tmp/rootfs"/var/cache/apt/archives/*.deb "$stage.tmp/rootfs"/var/lib/apt/lists/*
		touch "$stage.tmp/.complete"
		rm -rf "$stage"
		mv "$stage.tmp" "$stage"
	fi
	# code-interpreter-v1: base's tree + apt-get install in a chroot (its
	# own cached stage; debootstrap --include of these packages fails to
	# configure python3-zmq in its first pass).
	if [ "$name" = code-interpreter-v1 ]; then
		ci_key=$(echo "interpreter-v1 base=$stage_key packages=$interpreter_packages" |
			sha256sum | cut -c1-16)
		ci_stage="$cache_dir/interpreter-$ci_key"
		if [ ! -f "$ci_stage/.complete" ]; then
			rm -rf "$ci_stage.tmp"
			mkdir -p "$ci_stage.tmp"
			cp -a "$stage/rootfs" "$ci_stage.tmp/rootfs"
			rm -f "$ci_stage.tmp/rootfs/etc/resolv.conf"
			cp -L /etc/resolv.conf "$ci_stage.tmp/rootfs/etc/resolv.conf"
			{ chroot "$ci_stage.tmp/rootfs" apt-get update &&
				DEBIAN_FRONTEND=noninteractive chroot "$ci_stage.tmp/rootfs" \
					apt-get install -y --no-install-recommends $interpreter_packages; } \
				>"$work/apt.log" 2>&1 ||
				{ tail -n 30 "$work/apt.log" >&2; rm -rf "$ci_stage.tmp"; die "apt-get install in the chroot failed"; }
			rm -rf "$ci_stage.tmp/rootfs"/var/cache/apt/archives/*.deb "$ci_stage.tmp/rootfs"/var/lib/apt/lists/*
			touch "$ci_stage.tmp/.complete"
			rm -rf "$ci_stage"
			mv "$ci_stage.tmp" "$ci_stage"
		fi
		stage="$ci_stage"
	fi
	cp -a "$stage/rootfs/." "$root/"
else
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,var/tmp,home,mnt}
	cp "$busybox" "$root/bin/busybox"
	# Applet links: one per applet busybox reports, at the path it names.
	"$busybox" --list-full | while read -r applet; do
		[ "$applet" = bin/busybox ] && continue
		mkdir -p "$root/$(dirname "$applet")"
		ln -sf /bin/busybox "$root/$applet"
	done
	chmod 1777 "$root/tmp" "$root/var/tmp"
	chmod 0700 "$root/root"
fi
mkdir -p "$root"/{proc,sys,dev,tmp,run,home/user,usr/local/bin,sbin}

# Users: root and `user` (uid 1000), the e2b SDK's default user.
if [ "$name" = minimal ]; then
	cat > "$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
	cat > "$root/etc/group" <<'G'
root:x:0:
user:x:1000:
nogroup:x:65534:
G
	printf 'root:*:19000:0:99999:7:::\nuser:*:19000:0:99999:7:::\n' > "$root/etc/shadow"
	chmod 0640 "$root/etc/shadow"
else
	grep -q '^user:' "$root/etc/passwd" ||
		echo 'user:x:1000:1000:user:/home/user:/bin/bash' >> "$root/etc/passwd"
	grep -q '^user:' "$root/etc/group" || echo 'user:x:1000:' >> "$root/etc/group"
	grep -q '^user:' "$root/etc/shadow" || echo 'user:*:19000:0:99999:7:::' >> "$root/etc/shadow"
fi
chown 1000:1000 "$root/home/user"
chmod 0755 "$root/home/user"
chmod 1777 "$root/tmp"

printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
rm -f "$root/etc/resolv.conf"
echo 'nameserver 8.8.8.8' > "$root/etc/resolv.conf"
echo warren > "$root/etc/hostname"

# The agent, and its libraries when it is dynamically linked.
if [ -n "$agent" ]; then
	cp "$agent" "$root/usr/local/bin/warren-agent"
	chmod 0755 "$root/usr/local/bin/warren-agent"
	if ldd "$agent" >/dev/null 2>&1; then
		ldd "$agent" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' |
			while read -r lib; do copy_host_file "$lib"; done
	fi
fi

# code-interpreter-v1: warren-interpreter (port 49999) and its libraries;
# /usr/local/bin/warren-agent becomes a small launcher that starts the
# interpreter with the agent's --token-hash, then execs the real agent
# (warren-agent.bin). Both runtimes start /usr/local/bin/warren-agent (the
# jail as its program, the VM from warren-init), so one launcher serves
# both. guest/interpreter/README.md.
if [ -n "$interpreter" ]; then
	cp "$interpreter" "$root/usr/local/bin/warren-interpreter"
	chmod 0755 "$root/usr/local/bin/warren-interpreter"
	# found by the server as share/warren/... of its install prefix
	mkdir -p "$root/usr/local/share/warren/interpreter"
	install -m 0644 "$interpreter_startup" "$root/usr/local/share/warren/interpreter/ipython_startup.py"
	if ldd "$interpreter" >/dev/null 2>&1; then
		ldd "$interpreter" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' |
			while read -r lib; do copy_host_file "$lib"; done
	fi
	mv "$root/usr/local/bin/warren-agent" "$root/usr/local/bin/warren-agent.bin"
	cat > "$root/usr/local/bin/warren-agent" <<'LAUNCH'
#!/bin/sh
# code-interpreter-v1: warren-interpreter next to the agent, same token hash.
hash=""
prev=""
for arg in "$@"; do
	[ "$prev" = --token-hash ] && hash="$arg"
	prev="$arg"
done
if [ -n "$hash" ]; then
	/usr/local/bin/warren-interpreter --token-hash "$hash" &
else
	/usr/local/bin/warren-interpreter &
fi
# Port 49999 (C34F) listening before the agent starts, so a sandbox whose
# agent answers also accepts runCode (its first call waits for the kernel).
tries=0
while [ $tries -lt 100 ] && ! grep -q ':C34F 00000000:0000 0A' /proc/net/tcp 2>/dev/null; do
	sleep 0.05
	tries=$((tries + 1))
done
exec /usr/local/bin/warren-agent.bin "$@"
LAUNCH
	chmod 0755 "$root/usr/local/bin/warren-agent"
fi

# Init for the VM runtime (PID 1): proc/sys/dev, eth0 169.254.0.21/30 via
# 169.254.0.22, then the agent; reaps orphans forever. The token hash comes
# from the kernel command line (warren.token_hash=sha256:<hex>).
cat > "$root/sbin/warren-init" <<'INIT'
#!/bin/sh
# warren VM init (PID 1). guest/rootfs/README.md.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# /dev only when not mounted yet: with root on a block device the kernel
# has mounted devtmpfs there already, a second mount fails, and an empty
# tmpfs over it left no /dev/null (busybox sh then could not start the
# agent in the background). No redirection before /dev exists either.
if ! grep -q '^[^ ]* /dev ' /proc/mounts; then
	mount -t devtmpfs devtmpfs /dev || {
		mount -t tmpfs -o mode=0755 dev /dev
		mknod -m 0666 /dev/null c 1 3
		mknod -m 0666 /dev/zero c 1 5
		mknod -m 0666 /dev/urandom c 1 9
		mknod -m 0600 /dev/console c 5 1
	}
fi
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
[ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
hostname "$(cat /etc/hostname)"
token_hash=""
for word in $(cat /proc/cmdline); do
	case "$word" in
	warren.token_hash=*) token_hash="${word#warren.token_hash=}" ;;
	warren.hostname=*) hostname "${word#warren.hostname=}" ;;
	esac
done
# iproute2 where the template has it, else busybox's applet (Debian's
# minbase has neither iproute2 nor busybox's links).
if command -v ip >/dev/null 2>&1; then ip=ip; else ip="busybox ip"; fi
$ip link set lo up
$ip link set eth0 up
$ip addr add 169.254.0.21/30 dev eth0
$ip route add default via 169.254.0.22 dev eth0
if [ -x /usr/local/bin/warren-agent ]; then
	if [ -n "$token_hash" ]; then
		/usr/local/bin/warren-agent --listen 0.0.0.0:49983 --token-hash "$token_hash" &
	else
		/usr/local/bin/warren-agent --listen 0.0.0.0:49983 &
	fi
else
	echo "warren-init: no agent in this template" >&2
fi
while :; do wait; sleep 1; done
INIT
chmod 0755 "$root/sbin/warren-init"
"$busybox" sh -n "$root/sbin/warren-init"
# PID 1 of the VM: ours (minimal: instead of busybox's init applet link;
# base: minbase has no init).
if [ "$name" = minimal ] || { [ ! -e "$root/sbin/init" ] && [ ! -L "$root/sbin/init" ]; }; then
	ln -sfn warren-init "$root/sbin/init"
fi

# --- outputs ----------------------------------------------------------
size=$(du -sb "$root" | cut -f1)
image_mib=$(( size * 13 / 10 / 1048576 + 32 ))
mkfs.ext4 -q -F -L warren-root -d "$root" "$work/rootfs.ext4" "${image_mib}M" >/dev/null

built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cat > "$work/template.json" <<J
{
  "name": "$name",
  "agent_version": "$agent_version",
  "content_hash": "$hash",
  "built_at": "$built_at",
  "size": $size,
  "image_size": $(stat -c %s "$work/rootfs.ext4"),
  "suite": "$suite",
  "rootfs": "rootfs",
  "image": "rootfs.ext4"
}
J

rm -rf "$entry.old"
[ -e "$entry" ] && mv "$entry" "$entry.old"
rm -f "$work/debootstrap.log" "$work/apt.log"
mv "$work" "$entry"
trap - EXIT
rm -rf "$entry.old"
install_link
echo "template $name: built ($entry, agent $agent_version, $size bytes)"
