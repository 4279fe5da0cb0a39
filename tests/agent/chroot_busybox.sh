#!/usr/bin/env bash
# integration (labels: integration agent): warren-agent inside a minimal
# busybox root built the way templates are (binary + the libraries `ldd`
# lists + /etc/passwd), via chroot on 127.0.0.1. Checks that those
# libraries suffice, that SDK-style `/bin/bash -l -c` falls back to
# busybox sh, and measures exec -> /health. Exit 77 = skipped.
set -euo pipefail
AGENT=${1:?usage: chroot_busybox.sh path/to/warren-agent}
BUSYBOX=$(command -v busybox || true)
if [ "$(id -u)" != 0 ] || [ -z "$BUSYBOX" ] || ! command -v chroot >/dev/null; then
	echo "SKIP: needs root, chroot and busybox (busybox-static)"
	exit 77
fi
if ldd "$BUSYBOX" >/dev/null 2>&1; then # ldd fails on a static binary
	echo "SKIP: $BUSYBOX is not statically linked (install busybox-static)"
	exit 77
fi

ROOT=$(mktemp -d /tmp/warren-agent-chroot.XXXXXX)
AGENT_PID=
cleanup() {
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
	rm -rf "$ROOT"
}
trap cleanup EXIT

mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp" "$ROOT/root"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in sh cat echo id sleep ls; do ln -s busybox "$ROOT/bin/$applet"; done
cp "$AGENT" "$ROOT/warren-agent"
for lib in $(ldd "$AGENT" | grep -o '/[^ ]*'); do
	mkdir -p "$ROOT$(dirname "$lib")"
	cp -L "$lib" "$ROOT$lib"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOT/etc/passwd"
echo 'root:x:0:' >"$ROOT/etc/group"
[ ! -e "$ROOT/bin/bash" ] || { echo "FAIL: test root has bash"; exit 1; }

TOKEN=chroot-test-token
HASH=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
START=$(date +%s%N)
chroot "$ROOT" /warren-agent --listen "127.0.0.1:$PORT" --token-hash "sha256:$HASH" \
	2>"$ROOT/tmp/agent.log" &
AGENT_PID=$!
for _ in $(seq 2000); do
	curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
	sleep 0.005
done
END=$(date +%s%N)
curl -fs "http://127.0.0.1:$PORT/health" >/dev/null || { cat "$ROOT/tmp/agent.log"; echo "FAIL: no /health"; exit 1; }
echo "# chrooted agent answered /health $(( (END - START) / 1000000 )) ms after exec (incl. curl polling)"
curl -fsS -X POST "http://127.0.0.1:$PORT/init" -d "{\"accessToken\":\"$TOKEN\",\"defaultUser\":\"root\"}"

python3 - "$PORT" "$TOKEN" <<'PY'
import base64, json, struct, sys, urllib.request
port, token = sys.argv[1], sys.argv[2]
msg = json.dumps({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", "echo hi; id -u"]}}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/process.Process/Start",
                             data=b"\0" + struct.pack(">I", len(msg)) + msg,
                             headers={"Content-Type": "application/connect+json", "X-Access-Token": token})
body = urllib.request.urlopen(req, timeout=30).read()
out, end, off = b"", None, 0
while off + 5 <= len(body):
    flags, n = body[off], struct.unpack(">I", body[off + 1:off + 5])[0]
    m = json.loads(body[off + 5:off + 5 + n]); off += 5 + n
    if flags & 2:
        assert "error" not in m, m
        continue
    ev = m["event"]
    if "data" in ev:
        out += base64.b64decode(ev["data"].get("stdout", ""))
    if "end" in ev:
        end = ev["end"]
assert out == b"hi\n0\n", out
assert end and end.get("exitCode", 0) == 0 and end["exited"], end
print("busybox /bin/sh fallback ok:", out)
PY
