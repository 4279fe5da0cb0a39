/* Helpers shared by the files of lib/kafka; not part of the public API. */
#ifndef WARREN_KAFKA_INTERNAL_H
#define WARREN_KAFKA_INTERNAL_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "warren/kafka_settings.h"

/* rd_kafka_conf_set with the failure written to err. 0 or -EINVAL. */
int kafka_internal__set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
			size_t err_len);
/* Sets bootstrap.servers, client.id (client_id, NULL: kafka__client_id of
 * role) and the security settings of settings on conf. 0 or -EINVAL (err
 * says why; it never holds the password). */
int kafka_internal__client_conf(rd_kafka_conf_t *conf, const struct kafka_settings *settings,
				const char *role, const char *client_id, char *err, size_t err_len);
/* Routes librdkafka's log lines into warren's log. */
void kafka_internal__log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *buf);

#endif
