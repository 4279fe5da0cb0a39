/* kafka_settings: the Kafka settings of a binary, read once from the
 * configuration (the one place that names them for lib/kafka). */
#include <string.h>

#include "warren/config.h"
#include "warren/kafka_settings.h"

void kafka_settings__from_config(struct kafka_settings *out)
{
	const char *protocol = config__get("kafka_security_protocol", "plaintext");

	*out = (struct kafka_settings){
	    .brokers = config__get("kafka_brokers", NULL),
	    .client_id_prefix = config__get("kafka_client_id", "warren"),
	    .security = strcmp(protocol, "sasl_ssl") == 0 ? KAFKA_SECURITY_SASL_SSL
							  : KAFKA_SECURITY_PLAINTEXT,
	    .sasl_mechanism = config__get("kafka_sasl_mechanism", "SCRAM-SHA-512"),
	    .sasl_username = config__get("kafka_sasl_username", NULL),
	    .sasl_password = config__get("kafka_sasl_password", NULL),
	    .ssl_ca_file = config__get("kafka_ssl_ca_file", NULL),
	    .replication_factor = (int)config__get_int("kafka_replication_factor", 1),
	    .min_insync_replicas = (int)config__get_int("kafka_min_insync_replicas", 1),
	};
}
