#!/bin/sh
# netenv.sh: the network tests' world (docs/network.md "Tests").
#   up PREFIX DIR    create PREFIXhost (the worker's host namespace) and
#                    PREFIXinet (the fake internet: HTTP, TLS, DNS servers on
#                    documentation addresses), joined by one veth; the host's
#                    only route leads there. Files (CA, logs) go to DIR.
#   down PREFIX      kill what runs in PREFIX* namespaces and delete them.
#   reap             "down" every wn<pid> prefix whose pid is gone.
set -eu
cmd=$1
here=$(cd "$(dirname "$0")" && pwd)

down() {
	p=$1
	for ns in $(ip netns list | awk '{print $1}' | grep "^$p" || true); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
}

case "$cmd" in
down) down "$2" ;;
reap)
	# A run is over when its pid is gone or a zombie (kill -0 succeeds on
	# zombies).
	alive() { [ -r "/proc/$1/stat" ] && ! sed -E 's/^[0-9]+ \(.*\) //' "/proc/$1/stat" | grep -q '^Z'; }
	for ns in $(ip netns list | awk '{print $1}' | grep -E '^wn[0-9]+' || true); do
		pid=$(echo "$ns" | sed -E 's/^wn([0-9]+).*/\1/')
		if ! alive "$pid"; then down "wn$pid"; fi
	done
	for dir in /tmp/wn[0-9]*; do
		[ -d "$dir" ] || continue
		pid=${dir#/tmp/wn}
		case "$pid" in *[!0-9]*) continue ;; esac
		if ! alive "$pid"; then rm -rf "$dir"; fi
	done ;;
up)
	p=$2; dir=$3
	h=${p}host; i=${p}inet
	mkdir -p "$dir"
	ip netns add "$h"; ip netns add "$i"
	ip link add "u0$p" netns "$h" type veth peer name "u1$p" netns "$i"
	ip -n "$h" link set lo up; ip -n "$i" link set lo up
	ip -n "$h" addr add 198.18.0.1/30 dev "u0$p"; ip -n "$h" link set "u0$p" up
	ip -n "$i" addr add 198.18.0.2/30 dev "u1$p"; ip -n "$i" link set "u1$p" up
	ip -n "$h" route add default via 198.18.0.2
	# 169.254.169.254 stands in for a cloud metadata service, 10.99.0.10
	# for a private service a tenant may open explicitly.
	for a in 192.0.2.10 192.0.2.11 192.0.2.20 192.0.2.30 192.0.2.53 198.51.100.10 198.51.100.20 203.0.113.10 \
		169.254.169.254 10.99.0.10; do
		ip -n "$i" addr add "$a/32" dev lo
	done
	# A test CA and one server certificate for every test name.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=warren-test-ca -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=allowed.test \
		-keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
	printf 'subjectAltName=DNS:allowed.test,DNS:other.test,DNS:*.example.test,DNS:example.test,DNS:evil-example.test,DNS:split.test,DNS:internal.test\n' > "$dir/san.ext"
	openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
		-days 2 -extfile "$dir/san.ext" -out "$dir/server.pem" 2>/dev/null
	ip netns exec "$i" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
		--bind-interfaces --listen-address=192.0.2.53 --port=53 --user=root --group=root --local-ttl=30 \
		--pid-file="$dir/dnsmasq.pid" --log-facility="$dir/dnsmasq.log" \
		--host-record=allowed.test,192.0.2.10 --host-record=other.test,192.0.2.10 \
		--host-record=sub.example.test,192.0.2.11 --host-record=example.test,192.0.2.11 \
		--host-record=evil-example.test,192.0.2.11 --host-record=split.test,198.51.100.10 \
		--host-record=internal.test,10.1.2.3 --host-record=bench.test,198.51.100.20 \
		--host-record=keepalive.test,192.0.2.30 --host-record=forbidden.test,192.0.2.30 \
		--host-record=metadata.test,169.254.169.254 >"$dir/dnsmasq.out" 2>&1 &
	ip netns exec "$i" python3 "$here/fake_internet.py" "$dir" >"$dir/servers.log" 2>&1 &
	for _ in $(seq 1 100); do
		[ -e "$dir/ready" ] && [ -e "$dir/dnsmasq.pid" ] && break
		sleep 0.05
	done
	[ -e "$dir/ready" ] || { echo "fake internet servers did not start" >&2; cat "$dir/servers.log" >&2; exit 1; }
	;;
esac
