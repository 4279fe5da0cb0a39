#!/usr/bin/env bash
# Runs INSIDE the nested test host (tests/hostvm/run.sh -- guest-soak.sh ...):
# N consecutive guest boots under warren-vmm, one at a time, each bounded.
# A boot passes when the console shows the kernel starting init within the
# limit and, with --agent, when the agent answers /health on 49983 through
# a tap (169.254.0.22/30 here, the guest 169.254.0.21, as warren-init sets).
# A boot that does not reach init within the limit is counted as a hang; one
# that reaches init but whose agent never answers, or whose VMM exits, as
# failed; one whose VMM outlives SIGKILL by 10 s as unkillable (its kernel
# stack printed, never waited on). The console tail of any is printed.
# Prints a line as each boot starts, one every 30 s of a boot (so a run
# that goes silent is the nested host stalling), one per boot's result and
# a summary line:
#   "soak: N boots, P passed, H hung (...)"
# Exit 0 only when every boot passed.
#
# usage: guest-soak.sh --kernel VMLINUX [--rootfs EXT4] [--count N] [--limit S]
#          [--vcpus N] [--memory MiB] [--cpu-profile P] [--append "ARGS"] [--agent]
#          [--stop-on-failure]
# Without --rootfs the guest gets a one-file initramfs (busybox's sh as
# /init is not needed: the marker is the kernel's "Run /init").
set -uo pipefail

kernel='' rootfs='' count=10 limit=90 vcpus=1 memory=256 profile=host append='' agent=0 stop_on_failure=0
while [ $# -gt 0 ]; do
	case "$1" in
	--kernel) kernel=$2; shift 2 ;;
	--rootfs) rootfs=$2; shift 2 ;;
	--count) count=$2; shift 2 ;;
	--limit) limit=$2; shift 2 ;;
	--vcpus) vcpus=$2; shift 2 ;;
	--memory) memory=$2; shift 2 ;;
	--cpu-profile) profile=$2; shift 2 ;;
	--append) append=$2; shift 2 ;;
	--agent) agent=1; shift ;;
	--stop-on-failure) stop_on_failure=1; shift ;;
	*) echo "guest-soak: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -r "$kernel" ] || { echo "guest-soak: --kernel missing or unreadable" >&2; exit 2; }
vmm=${WARREN_BUILD_DIR:-build}/bin/warren-vmm
[ -x "$vmm" ] || { echo "guest-soak: no $vmm" >&2; exit 2; }

work=$(mktemp -d /tmp/guest-soak.XXXXXX)
tap=hvsoak0
vmm_pid=
cleanup() {
	[ -n "$vmm_pid" ] && kill -KILL "$vmm_pid" 2>/dev/null # disowned: no wait
	ip link del "$tap" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
# A process's state letter (R, S, D, Z, ...), empty once it is gone.
process_state() { awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null; }

base="console=ttyS0 reboot=k panic=-1 tsc=reliable"
declare -a devices=()
if [ -n "$rootfs" ]; then
	# A private copy: the guest mounts it read-write (tmpfs here).
	cp "$rootfs" "$work/rootfs.ext4" || exit 2
	devices+=(--device "{\"type\":\"block\",\"path\":\"$work/rootfs.ext4\"}")
	base="$base root=/dev/vda rw rootfstype=ext4 init=/sbin/init"
	marker="Run /sbin/init as init process"
else
	# newc cpio with /dev/console and an /init that the kernel runs.
	mkdir -p "$work/initramfs/dev"
	printf '#!/bin/sh\n' >"$work/initramfs/init"
	chmod 755 "$work/initramfs/init"
	(cd "$work/initramfs" && find . | cpio -o -H newc --quiet) >"$work/initrd"
	devices+=(--initrd "$work/initrd")
	marker="Run /init as init process"
fi
if [ "$agent" = 1 ]; then
	ip tuntap add "$tap" mode tap || exit 2
	ip addr add 169.254.0.22/30 dev "$tap"
	ip link set "$tap" up
	devices+=(--device "{\"type\":\"net\",\"tap\":\"$tap\",\"mac\":\"02:00:00:00:00:21\"}")
fi

passed=0 hung=0 failed=0
declare -a boot_times=() health_times=()
for i in $(seq 1 "$count"); do
	console=$work/console.$i
	: >"$console"
	start=$(date +%s.%N)
	"$vmm" --kernel "$kernel" --memory "$memory" --vcpus "$vcpus" --cpu-profile "$profile" \
		--cmdline "$base $append" --console "$console" --timeout-ms $(((limit + 30) * 1000)) \
		"${devices[@]}" >"$work/vmm.$i.log" 2>&1 &
	vmm_pid=$!
	disown "$vmm_pid" # reaped by bash all the same, without a notice of its SIGKILL
	reached='' healthy='' last_size=0 idle=0 result=hung ticks=0
	echo "soak: boot $i of $count: started"
	while :; do
		sleep 0.5
		now=$(date +%s.%N)
		elapsed=$(echo "$now - $start" | bc)
		if [ -z "$reached" ] && grep -qF "$marker" "$console"; then
			reached=$elapsed
			[ "$agent" = 1 ] || { result=ok; break; }
		fi
		if [ -n "$reached" ] && [ "$agent" = 1 ] &&
			curl -s -m 2 -o /dev/null -w '%{http_code}' http://169.254.0.21:49983/health 2>/dev/null | grep -q '^2'; then
			healthy=$elapsed
			result=ok
			break
		fi
		if ! kill -0 "$vmm_pid" 2>/dev/null; then
			result=exited
			break
		fi
		size=$(stat -c %s "$console")
		[ "$size" = "$last_size" ] && idle=$(echo "$idle + 0.5" | bc) || idle=0
		last_size=$size
		# Every 30 s of a boot: this host is alive and where the boot is
		# (a run that prints nothing stalled the nested host itself).
		ticks=$((ticks + 1))
		[ $((ticks % 60)) = 0 ] && echo "soak: boot $i: ${elapsed%.*} s, console $size bytes," \
			"init ${reached:-not yet}, VMM state $(process_state "$vmm_pid")"
		if [ "$(echo "$elapsed > $limit" | bc)" = 1 ]; then
			break
		fi
	done
	kill -KILL "$vmm_pid" 2>/dev/null
	# A VMM that outlives SIGKILL (stuck in the kernel): say where, and
	# never wait on it forever.
	for _ in $(seq 1 20); do
		kill -0 "$vmm_pid" 2>/dev/null || break
		sleep 0.5
	done
	if kill -0 "$vmm_pid" 2>/dev/null; then
		echo "soak: boot $i: the VMM (pid $vmm_pid) did not die 10 s after SIGKILL:" \
			"state $(process_state "$vmm_pid")," \
			"wchan $(cat "/proc/$vmm_pid/wchan" 2>/dev/null)"
		cat "/proc/$vmm_pid/stack" 2>/dev/null | head -n 12
		result=unkillable
	fi
	vmm_pid=
	# The kernel reached init but the agent never answered: not a hang.
	[ "$result" = hung ] && [ -n "$reached" ] && result=no-health
	case $result in
	ok) passed=$((passed + 1)); boot_times+=("$reached"); [ -n "$healthy" ] && health_times+=("$healthy") ;;
	hung) hung=$((hung + 1)) ;;
	*) failed=$((failed + 1)) ;;
	esac
	crng=$(grep -o '\[ *[0-9.]*\] random: crng init done' "$console" | head -n 1 | tr -s ' ')
	echo "soak: boot $i: $result (init at ${reached:--} s, health at ${healthy:--} s, console idle ${idle} s at the end; ${crng:-crng not ready yet})"
	if [ "$result" != ok ]; then
		echo "--- console tail of boot $i ---"
		tail -n 15 "$console"
		echo "--- vmm log ---"
		tail -n 5 "$work/vmm.$i.log"
		echo "---"
		[ "$stop_on_failure" = 1 ] && { count=$i; break; }
	fi
done
summary() { # values...: min/median/max
	[ $# -gt 0 ] || { echo "-"; return; }
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "min %.1f median %.1f max %.1f s", v[1], v[int((NR + 1) / 2)], v[NR] }'
}
echo "soak: $count boots, $passed passed, $hung hung, $failed failed otherwise (exited, no /health) (profile $profile, $vcpus vCPU, append '$append')"
echo "soak: start to \"$marker\": $(summary "${boot_times[@]+"${boot_times[@]}"}")"
[ "$agent" = 1 ] && echo "soak: start to agent /health: $(summary "${health_times[@]+"${health_times[@]}"}")"
[ "$passed" = "$count" ]
