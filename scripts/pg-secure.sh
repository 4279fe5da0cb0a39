# shellcheck shell=bash
# PostgreSQL over TLS with one role per component, for scripts/dev-stack
# when WARREN_PG_SECURE=1 (docs/transport-security.md). Sourced by
# dev-stack after lib.sh; needs PG_DIR, PG_PORT and STACK_DIR.
#   pg_secure_initdb_args  initdb's auth options (peer locally, SCRAM on TCP)
#   pg_secure_prepare      a CA and a server certificate (SAN localhost and
#                          127.0.0.1), pg_hba.conf with hostssl + SCRAM only
#   pg_secure_server_opts  the postgres -c options that turn TLS on
#   pg_secure_roles        the group and login roles, passwords in files
#   pg_secure_env          `export` lines: the admin role, verify-full, and
#                          libpq's PGPASSFILE/PGSSLMODE/PGSSLROOTCERT for psql
# Files, under $STACK_DIR/pg-secure (readable by root only): ca.crt,
# <role>.password for warren_admin, warren_api, warren_worker and
# warren_proxy, and pgpass (psql's PGPASSFILE for the tests).

PG_SECURE_DIR=$STACK_DIR/pg-secure
PG_SECURE_ROLES=(warren_admin warren_api warren_worker warren_proxy)

pg_secure_initdb_args() { echo "--auth-local=peer --auth-host=scram-sha-256"; }

# A self-signed CA and a server certificate it signs (P-256, 30 days).
pg_secure_certificates() {
	local tls=$PG_DIR/tls
	mkdir -p "$PG_SECURE_DIR" "$tls"
	chmod 700 "$PG_SECURE_DIR"
	[ -f "$PG_SECURE_DIR/ca.crt" ] && [ -f "$tls/server.crt" ] && return 0
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
		-subj "/CN=warren dev-stack CA" -keyout "$PG_SECURE_DIR/ca.key" \
		-out "$PG_SECURE_DIR/ca.crt" 2>/dev/null || die "making the PostgreSQL CA failed"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null ||
		die "making the PostgreSQL server key failed"
	printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
		"keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$tls/ext.cnf"
	openssl x509 -req -in "$tls/server.csr" -CA "$PG_SECURE_DIR/ca.crt" \
		-CAkey "$PG_SECURE_DIR/ca.key" -CAcreateserial -days 30 -extfile "$tls/ext.cnf" \
		-out "$tls/server.crt" 2>/dev/null || die "signing the PostgreSQL certificate failed"
	chown -R postgres: "$tls"
	chmod 600 "$tls/server.key"
}

# TLS-only, password-only: no `host` line, so plaintext TCP is refused.
pg_secure_prepare() {
	pg_secure_certificates
	cat >"$PG_DIR/data/pg_hba.conf" <<HBA
# dev-stack secure mode (WARREN_PG_SECURE=1): the superuser only over the
# socket; every role over TLS with SCRAM; nothing in plaintext.
local   all  postgres                 peer
hostssl all  all       127.0.0.1/32   scram-sha-256
HBA
	chown postgres: "$PG_DIR/data/pg_hba.conf"
}

pg_secure_server_opts() {
	echo "-c ssl=on -c ssl_cert_file=$PG_DIR/tls/server.crt -c ssl_key_file=$PG_DIR/tls/server.key" \
		"-c ssl_min_protocol_version=TLSv1.2 -c password_encryption=scram-sha-256"
}

# Creates the roles once (SQL on psql's stdin: no password on a command
# line). The group roles and their grants are migration 0008's.
pg_secure_roles() {
	local role password sql="" pgpass=$PG_SECURE_DIR/pgpass
	[ -f "$PG_SECURE_DIR/roles.done" ] && return 0
	umask 077
	: >"$pgpass"
	sql+="CREATE ROLE warren_role_api NOLOGIN; CREATE ROLE warren_role_worker NOLOGIN;"
	sql+=" CREATE ROLE warren_role_proxy NOLOGIN;"
	for role in "${PG_SECURE_ROLES[@]}"; do
		password=$(openssl rand -hex 24)
		printf '%s\n' "$password" >"$PG_SECURE_DIR/$role.password"
		printf '127.0.0.1:%s:*:%s:%s\n' "$PG_PORT" "$role" "$password" >>"$pgpass"
		case $role in
		warren_admin) sql+=" CREATE ROLE warren_admin LOGIN CREATEDB CREATEROLE PASSWORD '$password';"
			sql+=" GRANT pg_signal_backend, pg_read_all_stats TO warren_admin;" ;;
		*) sql+=" CREATE ROLE $role LOGIN PASSWORD '$password' IN ROLE warren_role_${role#warren_};" ;;
		esac
	done
	runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U postgres \
		-d postgres <<<"$sql" || die "creating the PostgreSQL roles failed"
	touch "$PG_SECURE_DIR/roles.done"
}

pg_secure_env() {
	echo "export WARREN_PG_URL='postgresql://warren_admin@127.0.0.1:$PG_PORT/postgres'" \
		"WARREN_PG_PASSWORD_FILE='$PG_SECURE_DIR/warren_admin.password'" \
		"WARREN_PG_SSL_MODE=verify-full WARREN_PG_SSL_ROOT_CERT='$PG_SECURE_DIR/ca.crt'" \
		"WARREN_PG_SECURE_DIR='$PG_SECURE_DIR'"
	# psql and other libpq tools (tests/e2e/stack.py keeps them from warren's binaries)
	echo "export PGPASSFILE='$PG_SECURE_DIR/pgpass' PGSSLMODE=verify-full" \
		"PGSSLROOTCERT='$PG_SECURE_DIR/ca.crt'"
}
