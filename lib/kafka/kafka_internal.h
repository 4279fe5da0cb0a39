/* Helpers shared by the files of lib/kafka; not part of the public API. */
#ifndef WARREN_KAFKA_INTERNAL_H
#define WARREN_KAFKA_INTERNAL_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/* rd_kafka_conf_set with the failure written to err. 0 or -EINVAL. */
int kafka_internal__set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
			size_t err_len);
/* Routes librdkafka's log lines into warren's log. */
void kafka_internal__log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *buf);

#endif
