# shellcheck shell=bash
# kafka-secure.sh: the secure Kafka mode of scripts/dev-stack (sourced by
# it when WARREN_KAFKA_SECURE=1 matters; defines functions and the client
# argument arrays, nothing else). The ACL table it grants is the one
# docs/deploy-kafka.md documents.
# Expects: SECURE, KAFKA_DIR, TLS_DIR, SECRETS_DIR, BROKERS, KAFKA_PORT,
# CONTROLLER_PORT, kafka_jars_dir, die.

# librdkafka before 2.6.1 (Debian 12 has 2.0.2) cannot SCRAM-authenticate
# to a Kafka 4 broker (it repeats the client nonce in its final message,
# which Kafka 4 refuses): the secure stack then runs the Kafka 3.9 broker.
kafka_secure_pom() {
	local version
	version=$(pkg-config --modversion rdkafka 2>/dev/null) || return 0
	if [ "$(printf '%s\n' "$version" 2.6.1 | sort -V | head -1)" != 2.6.1 ]; then
		echo "$WARREN_ROOT/scripts/kafka-broker-3.pom.xml"
	fi
}
if [ "${SECURE:-0}" = 1 ] && [ -z "${WARREN_KAFKA_POM:-}" ]; then
	WARREN_KAFKA_POM=$(kafka_secure_pom)
	[ -n "$WARREN_KAFKA_POM" ] || unset WARREN_KAFKA_POM
fi

# Client arguments for kcat and the JVM tools: the admin's in secure mode.
# shellcheck disable=SC2034 # used by scripts/dev-stack
KCAT_ARGS=()
# shellcheck disable=SC2034
ADMIN_ARGS=()
if [ "${SECURE:-0}" = 1 ]; then
	# shellcheck disable=SC2034
	KCAT_ARGS=(-F "$SECRETS_DIR/admin.kcat")
	# shellcheck disable=SC2034
	ADMIN_ARGS=(--command-config "$SECRETS_DIR/admin.properties")
fi

# A random password for user (kept: a restart reuses it), and the user's
# client files: <user>.kcat (librdkafka properties, for kcat -F) and
# <user>.properties (the JVM tools' --command-config).
kafka_secure_user() {
	local user=$1 password
	[ -f "$SECRETS_DIR/$user.password" ] ||
		(umask 077 && openssl rand -hex 24 >"$SECRETS_DIR/$user.password")
	password=$(cat "$SECRETS_DIR/$user.password")
	(
		umask 077
		printf '%s\n' "security.protocol=sasl_ssl" "sasl.mechanisms=SCRAM-SHA-512" \
			"sasl.username=$user" "sasl.password=$password" "ssl.ca.location=$TLS_DIR/ca.pem" \
			>"$SECRETS_DIR/$user.kcat"
		printf '%s\n' "security.protocol=SASL_SSL" "sasl.mechanism=SCRAM-SHA-512" \
			"sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$user\" password=\"$password\";" \
			"ssl.truststore.type=PEM" "ssl.truststore.location=$TLS_DIR/ca.pem" \
			"bootstrap.servers=$BROKERS" >"$SECRETS_DIR/$user.properties"
	)
}

# The CA, the broker's certificate (SAN 127.0.0.1 and localhost: clients
# verify the host name; it is also the broker's client certificate on the
# controller listener) and the admin user, once per stack directory.
kafka_secure_material() {
	local t=$TLS_DIR
	mkdir -p "$t" "$SECRETS_DIR"
	chmod 700 "$SECRETS_DIR" "$t"
	if [ ! -f "$t/broker.pem" ]; then
		openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=warren dev Kafka CA" \
			-keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null || die "openssl: CA"
		openssl req -newkey rsa:2048 -nodes -subj "/CN=warren-broker" \
			-keyout "$t/broker.key" -out "$t/broker.csr" 2>/dev/null || die "openssl: broker key"
		printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost${WARREN_KAFKA_TLS_SAN:+,$WARREN_KAFKA_TLS_SAN}" \
			"extendedKeyUsage=serverAuth,clientAuth" >"$t/broker.ext"
		openssl x509 -req -in "$t/broker.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
			-days 30 -extfile "$t/broker.ext" -out "$t/broker.crt" 2>/dev/null || die "openssl: broker certificate"
		# Kafka's PEM key store: the PKCS#8 key, then the chain.
		openssl pkcs8 -topk8 -nocrypt -in "$t/broker.key" -out "$t/broker.p8" || die "openssl: pkcs8"
		cat "$t/broker.p8" "$t/broker.crt" "$t/ca.pem" >"$t/broker.pem"
		chmod 644 "$t/ca.pem"
	fi
	kafka_secure_user admin
	# StorageTool takes SCRAM users only on its command line (the broker's
	# own admin credential must exist before it can start).
	# shellcheck disable=SC2034
	SCRAM_ARGS=(--add-scram "SCRAM-SHA-512=[name=admin,password=$(cat "$SECRETS_DIR/admin.password")]")
}

# The listener part of server.properties in secure mode.
kafka_secure_properties() {
	cat <<PROPS
listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(cat "$SECRETS_DIR/admin.password")";
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:CN=warren-broker
PROPS
}

# The user and ACL lines (scripts/kafka-admin.java) of one role: api,
# proxy or worker:HOST. Topics under WARREN_KAFKA_TOPIC_PREFIX; groups as
# the components name them (WARREN_WORKER_GROUP, WARREN_BUILDER_GROUP).
kafka_role_spec() {
	local role=$1 p=${WARREN_KAFKA_TOPIC_PREFIX:-} user host
	case $role in
	api) user=api ;;
	proxy) user=proxy ;;
	worker:?*) host=${role#worker:}; user=worker-$host ;;
	*) die "unknown role '$role' (api, proxy, worker:HOST)" ;;
	esac
	kafka_secure_user "$user"
	echo "user $user $SECRETS_DIR/$user.password"
	case $role in
	api)
		echo "allow api WRITE TOPIC PREFIXED ${p}warren.sandbox.commands"
		echo "allow api WRITE TOPIC PREFIXED ${p}warren.host."
		echo "allow api READ TOPIC LITERAL ${p}warren.sandbox.events"
		echo "allow api WRITE TOPIC LITERAL ${p}warren.template.builds"
		echo "allow api CREATE TOPIC LITERAL ${p}warren.template.builds"
		echo "allow api READ GROUP PREFIXED warren-api-"
		echo "allow api DELETE GROUP PREFIXED warren-api-"
		;;
	proxy)
		echo "allow proxy READ TOPIC LITERAL ${p}warren.sandbox.events"
		echo "allow proxy WRITE TOPIC PREFIXED ${p}warren.host."
		echo "allow proxy READ GROUP PREFIXED ${p}warren-proxy-"
		echo "allow proxy DELETE GROUP PREFIXED ${p}warren-proxy-"
		;;
	worker:*)
		echo "allow $user READ TOPIC PREFIXED ${p}warren.sandbox.commands"
		echo "allow $user READ TOPIC LITERAL ${p}warren.host.$host.commands"
		echo "allow $user CREATE TOPIC LITERAL ${p}warren.host.$host.commands"
		echo "allow $user WRITE TOPIC PREFIXED ${p}warren.host."
		echo "allow $user WRITE TOPIC LITERAL ${p}warren.sandbox.events"
		echo "allow $user WRITE TOPIC LITERAL ${p}warren.sandbox.dlq"
		echo "allow $user READ TOPIC LITERAL ${p}warren.template.builds"
		echo "allow $user WRITE TOPIC LITERAL ${p}warren.template.events"
		echo "allow $user READ GROUP LITERAL ${WARREN_WORKER_GROUP:-warren-workers}"
		echo "allow $user READ GROUP LITERAL warren-worker-$host"
		echo "allow $user READ GROUP LITERAL ${WARREN_BUILDER_GROUP:-warren-builders}"
		;;
	esac
}

# Creates the users of the roles given (api, proxy, worker:HOST ...) and
# grants their ACLs, in one JVM.
kafka_grant() {
	local role
	[ $# -gt 0 ] || die "grant: name roles (api, proxy, worker:HOST)"
	for role in "$@"; do kafka_role_spec "$role"; done >"$KAFKA_DIR/grant.spec"
	java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$(kafka_jars_dir)/*" \
		"$WARREN_ROOT/scripts/kafka-admin.java" "$SECRETS_DIR/admin.properties" \
		<"$KAFKA_DIR/grant.spec" >>"$KAFKA_DIR/grant.log" 2>&1 ||
		{ tail -20 "$KAFKA_DIR/grant.log" >&2; die "granting $* failed"; }
	tail -1 "$KAFKA_DIR/grant.log" >&2
}
