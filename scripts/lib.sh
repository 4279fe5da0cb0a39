# shellcheck shell=bash
# Shared shell helpers for scripts/*. Source it; it defines no side effects.
WARREN_ROOT=${WARREN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
WARREN_CACHE_DIR=${WARREN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/warren}

say() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# sha256 of the named files' contents (and names), short form.
# Keyed by each file's name and bytes, not its path: every clone shares the cache.
content_hash() { (for f in "$@"; do basename "$f"; cat "$f"; done) | sha256sum | cut -c1-16; }

# The Kafka jars folder for the checked-in pom (resolved by scripts/setup);
# WARREN_KAFKA_POM names another (scripts/kafka-broker-3.pom.xml).
kafka_jars_dir() { echo "$WARREN_CACHE_DIR/kafka/$(content_hash "${WARREN_KAFKA_POM:-$WARREN_ROOT/scripts/kafka-broker.pom.xml}")/jars"; }

# The PostgreSQL server binaries of this Debian release (15 on 12, 17 on 13).
pg_bindir() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[ -x "$d/initdb" ] && { echo "$d"; return 0; }
	done
	return 1
}
