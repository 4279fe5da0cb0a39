#!/bin/bash
# pipeline_smoke.sh [build-dir]: warren-api + the real warren-worker (jail
# runtime, network slots) on their own database and Kafka topic prefix of
# the dev stack: create (POST /v2/sandboxes), list, timeout, kill, 404, then
# 20 create+kill rounds, and prints the per-phase timings of the API's
# access log (checks+admission, Kafka ack, result wait, total). Manual
# (needs root, `warren template build minimal`, scripts/dev-stack up); not
# run by CI. Removes its database and topics on exit.
BUILD=${1:-build}
cd "$(dirname "$0")/../.." || exit 1
eval "$(scripts/dev-stack env)"
SERVER=$WARREN_PG_URL
DB=warren_api_smoke_$$
OUT=$(mktemp -d /tmp/warren-api-smoke.XXXXXX)
psql -q "$SERVER" -c "CREATE DATABASE $DB" || exit 1
export WARREN_PG_URL=${SERVER%/*}/$DB
P="smoke.api.$$."
export WARREN_KAFKA_TOPIC_PREFIX=$P WARREN_TOKEN_SEED=smoke-api-seed-0123456789 WARREN_LOG_LEVEL=info
B=$BUILD/bin
HOST=smokeapi$$
PORT=${WARREN_SMOKE_PORT:-39177}
URL=http://127.0.0.1:$PORT
cleanup() {
	[ -n "$APID" ] && kill "$APID" 2>/dev/null
	[ -n "$WPID" ] && kill "$WPID" 2>/dev/null
	sleep 3
	[ -n "$APID" ] && kill -9 "$APID" 2>/dev/null
	[ -n "$WPID" ] && kill -9 "$WPID" 2>/dev/null
	for t in warren.sandbox.commands warren.sandbox.events warren.sandbox.dlq "warren.host.$HOST.commands"; do
		"$B/warren" kafka delete-topic "$P$t" >/dev/null 2>&1
	done
	psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
	echo "logs in $OUT"
}
trap cleanup EXIT
"$B/warren" migrate >/dev/null 2>&1 || { echo "migrate failed"; exit 1; }
"$B/warren" admin team create smoke --tier pro >/dev/null
KEY=$("$B/warren" admin key create --team smoke 2>/dev/null | grep -o 'e2b_[0-9a-f]*' | head -1)
"$B/warren" template build minimal >/dev/null 2>&1 || { echo "template build failed"; exit 1; }
WARREN_HOST_ID=$HOST "$B/warren-worker" >"$OUT/worker.log" 2>&1 &
WPID=$!
for _ in $(seq 1 120); do grep -q "ready:" "$OUT/worker.log" && break; sleep 0.5; done
WARREN_API_LISTEN=127.0.0.1:$PORT "$B/warren-api" >/dev/null 2>"$OUT/api.log" &
APID=$!
for _ in $(seq 1 60); do curl -s -o /dev/null "$URL/health" && break; sleep 0.5; done
curl -s -w " %{http_code}\n" -X POST -H "X-API-Key: $KEY" -d '{"templateID":"minimal","timeout":60}' \
	"$URL/v2/sandboxes" | tee "$OUT/create.json"
ID=$(grep -o '"sandboxID":"[a-z0-9]*"' "$OUT/create.json" | cut -d'"' -f4)
[ -n "$ID" ] || exit 1
curl -s -w " %{http_code}\n" -H "X-API-Key: $KEY" "$URL/v2/sandboxes"
curl -s -w "timeout %{http_code}\n" -X POST -H "X-API-Key: $KEY" -d '{"timeout":120}' "$URL/sandboxes/$ID/timeout"
curl -s -w "kill %{http_code}\n" -X DELETE -H "X-API-Key: $KEY" "$URL/sandboxes/$ID"
curl -s -w " %{http_code}\n" -H "X-API-Key: $KEY" "$URL/sandboxes/$ID"
for _ in $(seq 1 20); do
	ID=$(curl -s -X POST -H "X-API-Key: $KEY" -d '{"templateID":"minimal","timeout":60}' "$URL/v2/sandboxes" |
		grep -o '"sandboxID":"[a-z0-9]*"' | cut -d'"' -f4)
	[ -n "$ID" ] && curl -s -o /dev/null -X DELETE -H "X-API-Key: $KEY" "$URL/sandboxes/$ID"
done
grep "POST /v2/sandboxes -> 201" "$OUT/api.log" | tail -20 | awk '
	{ for (i = 1; i <= NF; i++) {
		if ($i == "in") total[n] = $(i + 1)
		if ($i == "(checks+admission") admission[n] = $(i + 1)
		if ($i == "ack") ack[n] = $(i + 1)
		if ($i == "wait") wait_ms[n] = $(i + 1)
	  } n++ }
	function median(a, m, i, j, t) { m = n; for (i = 0; i < m; i++) for (j = i + 1; j < m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t } return a[int(m / 2)] }
	END { printf "warm creates: %d, median total %s ms (checks+admission %s, kafka ack %s, result wait %s)\n",
		n, median(total), median(admission), median(ack), median(wait_ms) }'
