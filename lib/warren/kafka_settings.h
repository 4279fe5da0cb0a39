/* kafka_settings: how a binary reaches Kafka (brokers, client id prefix,
 * transport security), read once from the configuration by the binary and
 * handed to every lib/kafka client it makes. lib/kafka never reads the
 * configuration itself. The strings live as long as the configuration
 * (until exit) or, when a test fills the struct, as long as the test. */
#ifndef WARREN_KAFKA_SETTINGS_H
#define WARREN_KAFKA_SETTINGS_H

enum kafka_security {
	KAFKA_SECURITY_PLAINTEXT = 0, /* no encryption, no authentication (dev, tests) */
	KAFKA_SECURITY_SASL_SSL,      /* TLS + SASL (SCRAM) authentication */
};

struct kafka_settings {
	const char *brokers;	      /* HOST:PORT,...; NULL: KAFKA_DEFAULT_BROKERS */
	const char *client_id_prefix; /* NULL: "warren" */
	enum kafka_security security;
	/* KAFKA_SECURITY_SASL_SSL only: */
	const char *sasl_mechanism; /* NULL: "SCRAM-SHA-512" */
	const char *sasl_username;  /* required */
	const char *sasl_password;  /* required; the secret itself, never logged */
	const char *ssl_ca_file;    /* PEM CA bundle the brokers' certificates chain to;
				       NULL: the system's trust store */
	/* Topics warren creates (kafka__create_topic with replication factor
	 * 0): copies of each partition and min.insync.replicas; 0: 1. */
	int replication_factor;
	int min_insync_replicas;
};

/* Fills out from the settings kafka_brokers, kafka_client_id,
 * kafka_security_protocol, kafka_sasl_mechanism, kafka_sasl_username,
 * kafka_sasl_password (given as kafka_sasl_password_file) and
 * kafka_ssl_ca_file, kafka_replication_factor and
 * kafka_min_insync_replicas. A broken configuration ends the process as every
 * config__get does. */
void kafka_settings__from_config(struct kafka_settings *out);

#endif
