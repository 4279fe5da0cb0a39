/* kafka: configuration, topic names and the admin helper. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "warren/clock.h"
#include "warren/kafka.h"
#include "warren/log.h"

#include "kafka_internal.h"

int kafka__client_id(const struct kafka_settings *settings, const char *role, char *out,
		     size_t out_len)
{
	const char *prefix =
	    settings && settings->client_id_prefix ? settings->client_id_prefix : "warren";
	char host[64] = "localhost";
	int n;

	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	n = snprintf(out, out_len, "%s-%s-%s", prefix, role ? role : "client", host);
	if (n < 0 || (size_t)n >= out_len)
		return -ENAMETOOLONG;
	return 0;
}

/* The security part of a client's configuration (struct kafka_settings). */
static int kafka__set_security(rd_kafka_conf_t *conf, const struct kafka_settings *settings,
			       char *err, size_t err_len)
{
	char local[256];

	if (settings->security == KAFKA_SECURITY_PLAINTEXT)
		return kafka_internal__set(conf, "security.protocol", "plaintext", err, err_len);
	if (!settings->sasl_username || !settings->sasl_username[0] || !settings->sasl_password ||
	    !settings->sasl_password[0]) {
		snprintf(err, err_len,
			 "sasl_ssl needs kafka_sasl_username and kafka_sasl_password(_file)");
		return -EINVAL;
	}
	if (kafka_internal__set(conf, "security.protocol", "sasl_ssl", err, err_len) ||
	    kafka_internal__set(conf, "sasl.mechanisms",
				settings->sasl_mechanism ? settings->sasl_mechanism
							 : "SCRAM-SHA-512",
				err, err_len) ||
	    kafka_internal__set(conf, "sasl.username", settings->sasl_username, err, err_len) ||
	    kafka_internal__set(conf, "ssl.endpoint.identification.algorithm", "https", err,
				err_len))
		return -EINVAL;
	/* Not through kafka_internal__set: its error text would hold the secret. */
	if (rd_kafka_conf_set(conf, "sasl.password", settings->sasl_password, local,
			      sizeof(local)) != RD_KAFKA_CONF_OK) {
		snprintf(err, err_len, "sasl.password refused");
		return -EINVAL;
	}
	if (settings->ssl_ca_file && settings->ssl_ca_file[0] &&
	    kafka_internal__set(conf, "ssl.ca.location", settings->ssl_ca_file, err, err_len))
		return -EINVAL;
	return 0;
}

int kafka_internal__client_conf(rd_kafka_conf_t *conf, const struct kafka_settings *settings,
				const char *role, const char *client_id, char *err, size_t err_len)
{
	char default_id[128];

	if (!settings) {
		snprintf(err, err_len, "no Kafka settings");
		return -EINVAL;
	}
	if (!client_id) {
		if (kafka__client_id(settings, role, default_id, sizeof(default_id)))
			snprintf(default_id, sizeof(default_id), "warren-%s", role);
		client_id = default_id;
	}
	if (kafka_internal__set(conf, "bootstrap.servers",
				settings->brokers ? settings->brokers : KAFKA_DEFAULT_BROKERS, err,
				err_len) ||
	    kafka_internal__set(conf, "client.id", client_id, err, err_len))
		return -EINVAL;
	return kafka__set_security(conf, settings, err, err_len);
}

int kafka__host_topic(const char *host, char *out, size_t out_len)
{
	size_t len;
	int n;

	if (!host)
		return -EINVAL;
	len = strlen(host);
	if (len == 0 || len > KAFKA_EVENT_HOST_ID_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)host[i]) && host[i] != '-' && host[i] != '_' &&
		    host[i] != '.')
			return -EINVAL;
	n = snprintf(out, out_len, KAFKA_TOPIC_HOST_PREFIX "%s" KAFKA_TOPIC_HOST_SUFFIX, host);
	if (n < 0 || (size_t)n >= out_len)
		return -ENAMETOOLONG;
	return 0;
}

int kafka__runtime_topic(const char *runtime, char *out, size_t out_len)
{
	int n;

	if (!runtime || (strcmp(runtime, "vm") && strcmp(runtime, "jail")))
		return -EINVAL;
	n = snprintf(out, out_len, KAFKA_TOPIC_SANDBOX_COMMANDS ".%s", runtime);
	if (n < 0 || (size_t)n >= out_len)
		return -ENAMETOOLONG;
	return 0;
}

const char *kafka__error_string(int kafka_error)
{
	return rd_kafka_err2str((rd_kafka_resp_err_t)kafka_error);
}

int kafka_internal__set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
			size_t err_len)
{
	char local[256];

	if (rd_kafka_conf_set(conf, name, value, local, sizeof(local)) != RD_KAFKA_CONF_OK) {
		if (err && err_len)
			snprintf(err, err_len, "%s=%s: %s", name, value, local);
		return -EINVAL;
	}
	return 0;
}

void kafka_internal__log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *buf)
{
	/* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
	if (level <= 3)
		log_error("rdkafka %s %s: %s", rd_kafka_name(rk), facility, buf);
	else if (level == 4)
		log_warn("rdkafka %s %s: %s", rd_kafka_name(rk), facility, buf);
	else
		log_debug("rdkafka %s %s: %s", rd_kafka_name(rk), facility, buf);
}

/* One admin request in flight: its own handle, result queue, options and
 * (once answered) result event. Opened and closed as one. login_failed is
 * set (by admin_error, on the requesting thread) when the broker refused
 * the TLS handshake or the SASL login: waiting longer will not help. */
struct admin_request {
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;
	rd_kafka_AdminOptions_t *options;
	rd_kafka_event_t *event;
	bool login_failed;
	char login_error[200];
};

/* librdkafka's error callback of an admin handle (served by rd_kafka_poll
 * in admin_wait and create's metadata loop). */
static void admin_error(rd_kafka_t *rk, int error, const char *reason, void *opaque)
{
	struct admin_request *a = opaque;

	(void)rk;
	if (error != RD_KAFKA_RESP_ERR__AUTHENTICATION && error != RD_KAFKA_RESP_ERR__SSL)
		return;
	a->login_failed = true;
	snprintf(a->login_error, sizeof(a->login_error), "%s", reason);
}

/* -EACCES with err set when a's login failed, else 0. */
static int admin_login_check(const struct admin_request *a, const char *request, const char *name,
			     char *err, size_t err_len)
{
	if (!a->login_failed)
		return 0;
	snprintf(err, err_len, "%s %s: Kafka refused the login: %s", request, name, a->login_error);
	return -EACCES;
}

/* A short-lived producer handle used only to talk to the admin API, its
 * errors reported to a. */
static rd_kafka_t *admin_handle(struct admin_request *a, const struct kafka_settings *settings,
				char *err, size_t err_len)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char local[256];
	rd_kafka_t *rk;

	if (kafka_internal__client_conf(conf, settings, "admin", NULL, err, err_len)) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, kafka_internal__log_cb);
	rd_kafka_conf_set_error_cb(conf, admin_error);
	rd_kafka_conf_set_opaque(conf, a);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, local, sizeof(local));
	if (!rk) {
		snprintf(err, err_len, "rd_kafka_new: %s", local);
		rd_kafka_conf_destroy(conf);
	}
	return rk;
}

/* Waits until the admin result event of type wanted arrives on a's queue,
 * or a's login failed (NULL). */
static rd_kafka_event_t *admin_wait(struct admin_request *a, rd_kafka_event_type_t wanted,
				    int timeout_ms)
{
	uint64_t deadline = clock__monotonic_ms() + (uint64_t)timeout_ms;

	while (clock__monotonic_ms() < deadline) {
		rd_kafka_event_t *event;

		rd_kafka_poll(a->rk, 0); /* error callbacks */
		if (a->login_failed)
			return NULL;
		event = rd_kafka_queue_poll(a->queue, 100);
		if (!event)
			continue;
		if (rd_kafka_event_type(event) == wanted)
			return event;
		rd_kafka_event_destroy(event);
	}
	return NULL;
}

/* 1 when topic's metadata shows partitions partitions with leaders
 * (partitions < 0: just present), 0 when absent, -1 on error. */
static int topic_ready(rd_kafka_t *rk, const char *topic, int partitions)
{
	const struct rd_kafka_metadata *metadata = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	int ready = 0;

	if (!rkt)
		return -1;
	if (rd_kafka_metadata(rk, 0, rkt, &metadata, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_topic_destroy(rkt);
		return -1;
	}
	for (int i = 0; i < metadata->topic_cnt; i++) {
		const struct rd_kafka_metadata_topic *t = &metadata->topics[i];
		int led = 0;

		if (strcmp(t->topic, topic) != 0 || t->err != RD_KAFKA_RESP_ERR_NO_ERROR)
			continue;
		for (int p = 0; p < t->partition_cnt; p++)
			if (t->partitions[p].leader >= 0 &&
			    t->partitions[p].err == RD_KAFKA_RESP_ERR_NO_ERROR)
				led++;
		ready = partitions < 0 ? 1 : (led >= partitions && t->partition_cnt >= partitions);
	}
	rd_kafka_metadata_destroy(metadata);
	rd_kafka_topic_destroy(rkt);
	return ready;
}

/* Admin options with both timeouts (the operation timeout only where the
 * broker-side operation has one). */
static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op,
					      int timeout_ms, bool operation_timeout)
{
	rd_kafka_AdminOptions_t *options = rd_kafka_AdminOptions_new(rk, op);
	char local[256];

	if (operation_timeout)
		rd_kafka_AdminOptions_set_operation_timeout(options, timeout_ms, local,
							    sizeof(local));
	rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, local, sizeof(local));
	return options;
}

/* Waits for the result event of an admin request on `name`: 0 with
 * a->event set, -EACCES when the login failed, -ETIMEDOUT with no answer,
 * -EIO when the request as a whole failed (a->event then still set, freed
 * by admin_request__close); err says why. */
static int admin_answer(struct admin_request *a, rd_kafka_event_type_t wanted, int timeout_ms,
			const char *request, const char *name, char *err, size_t err_len)
{
	rd_kafka_event_t **event = &a->event;

	*event = admin_wait(a, wanted, timeout_ms);
	if (admin_login_check(a, request, name, err, err_len))
		return -EACCES;
	if (!*event) {
		snprintf(err, err_len, "%s %s: no answer in %d ms", request, name, timeout_ms);
		return -ETIMEDOUT;
	}
	if (rd_kafka_event_error(*event)) {
		snprintf(err, err_len, "%s %s: %s", request, name,
			 rd_kafka_event_error_string(*event));
		return -EIO;
	}
	return 0;
}

/* 0, or -EINVAL when no handle could be made (err says why). */
static int admin_request__open(struct admin_request *a, const struct kafka_settings *settings,
			       rd_kafka_admin_op_t op, int timeout_ms, bool operation_timeout,
			       char *err, size_t err_len)
{
	*a = (struct admin_request){0};
	a->rk = admin_handle(a, settings, err, err_len);
	if (!a->rk)
		return -EINVAL;
	a->queue = rd_kafka_queue_new(a->rk);
	a->options = admin_options(a->rk, op, timeout_ms, operation_timeout);
	return 0;
}

static void admin_request__close(struct admin_request *a)
{
	if (a->event)
		rd_kafka_event_destroy(a->event);
	if (a->options)
		rd_kafka_AdminOptions_destroy(a->options);
	if (a->queue)
		rd_kafka_queue_destroy(a->queue);
	if (a->rk)
		rd_kafka_destroy(a->rk);
	*a = (struct admin_request){0};
}

/* The topic results of a CreateTopics answer: 0 (*existed when the topic
 * was there already) or -EIO (err says why). */
static int create_topic__result(rd_kafka_event_t *event, const char *topic, bool *existed,
				char *err, size_t err_len)
{
	const rd_kafka_CreateTopics_result_t *result = rd_kafka_event_CreateTopics_result(event);
	size_t count = 0;
	const rd_kafka_topic_result_t **results =
	    rd_kafka_CreateTopics_result_topics(result, &count);

	for (size_t i = 0; i < count; i++) {
		rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
		const char *why = rd_kafka_topic_result_error_string(results[i]);

		if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
			*existed = true;
		else if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(err, err_len, "CreateTopics %s: %s", topic,
				 why ? why : rd_kafka_err2str(e));
			return -EIO;
		}
	}
	return 0;
}

/* The NewTopic of a create: replication_factor copies, or (<= 0) the
 * configured factor with the configured min.insync.replicas (clamped to
 * the factor); NULL with err set when librdkafka refuses the values. */
static rd_kafka_NewTopic_t *create_topic__new(const struct kafka_settings *settings,
					      const char *topic, int partitions,
					      int replication_factor, char *err, size_t err_len)
{
	rd_kafka_NewTopic_t *new_topic;
	int64_t min_insync = 0;
	char local[256], value[24];

	if (replication_factor <= 0) {
		replication_factor = settings->replication_factor;
		min_insync = settings->min_insync_replicas;
		if (replication_factor < 1)
			replication_factor = 1;
		if (min_insync > replication_factor)
			min_insync = replication_factor;
	}
	new_topic =
	    rd_kafka_NewTopic_new(topic, partitions, replication_factor, local, sizeof(local));
	if (!new_topic) {
		snprintf(err, err_len, "NewTopic %s: %s", topic, local);
		return NULL;
	}
	if (min_insync > 0) {
		snprintf(value, sizeof(value), "%lld", (long long)min_insync);
		if (rd_kafka_NewTopic_set_config(new_topic, "min.insync.replicas", value) !=
		    RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(err, err_len, "NewTopic %s: min.insync.replicas=%s refused", topic,
				 value);
			rd_kafka_NewTopic_destroy(new_topic);
			return NULL;
		}
	}
	return new_topic;
}

int kafka__create_topic(const struct kafka_settings *settings, const char *topic, int partitions,
			int replication_factor, int timeout_ms, char *err, size_t err_len)
{
	rd_kafka_NewTopic_t *new_topic = NULL;
	struct admin_request a;
	uint64_t deadline = clock__monotonic_ms() + (uint64_t)timeout_ms;
	bool existed = false;
	int ret, present;

	if (!topic || partitions <= 0 || strlen(topic) > KAFKA_TOPIC_NAME_MAX)
		return -EINVAL;
	ret = admin_request__open(&a, settings, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout_ms, true,
				  err, err_len);
	if (ret)
		return ret;
	/* Present already: nothing to create (needs only the right to describe
	 * it, which a client that may read or write it has). Ask until the
	 * metadata answers: the first request also connects and authenticates. */
	while ((present = topic_ready(a.rk, topic, -1)) < 0 && !a.login_failed &&
	       clock__monotonic_ms() < deadline)
		rd_kafka_poll(a.rk, 100); /* error callbacks */
	ret = admin_login_check(&a, "CreateTopics", topic, err, err_len);
	if (ret)
		goto out;
	if (present == 1) {
		existed = true;
		goto wait_leaders;
	}
	new_topic =
	    create_topic__new(settings, topic, partitions, replication_factor, err, err_len);
	if (!new_topic) {
		ret = -EINVAL;
		goto out;
	}
	rd_kafka_CreateTopics(a.rk, &new_topic, 1, a.options, a.queue);
	ret = admin_answer(&a, RD_KAFKA_EVENT_CREATETOPICS_RESULT, timeout_ms, "CreateTopics",
			   topic, err, err_len);
	if (!ret)
		ret = create_topic__result(a.event, topic, &existed, err, err_len);
	if (ret)
		goto out;
wait_leaders:
	/* The controller answered; wait until the leaders are known too. */
	while (clock__monotonic_ms() < deadline) {
		/* An existing topic keeps its own partition count. */
		if (topic_ready(a.rk, topic, existed ? -1 : partitions) == 1)
			goto out;
		usleep(100 * 1000);
	}
	snprintf(err, err_len, "topic %s: partitions without leaders after %d ms", topic,
		 timeout_ms);
	ret = -ETIMEDOUT;
out:
	if (new_topic)
		rd_kafka_NewTopic_destroy(new_topic);
	admin_request__close(&a);
	return ret;
}

int kafka__delete_topic(const struct kafka_settings *settings, const char *topic, int timeout_ms,
			char *err, size_t err_len)
{
	rd_kafka_DeleteTopic_t *delete_topic;
	const rd_kafka_topic_result_t **results;
	struct admin_request a;
	size_t count = 0;
	int ret;

	if (!topic)
		return -EINVAL;
	ret = admin_request__open(&a, settings, RD_KAFKA_ADMIN_OP_DELETETOPICS, timeout_ms, true,
				  err, err_len);
	if (ret)
		return ret;
	delete_topic = rd_kafka_DeleteTopic_new(topic);
	rd_kafka_DeleteTopics(a.rk, &delete_topic, 1, a.options, a.queue);
	rd_kafka_DeleteTopic_destroy(delete_topic);
	ret = admin_answer(&a, RD_KAFKA_EVENT_DELETETOPICS_RESULT, timeout_ms, "DeleteTopics",
			   topic, err, err_len);
	if (ret)
		goto out;
	results = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(a.event),
						      &count);
	for (size_t i = 0; i < count; i++) {
		rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);

		if (e != RD_KAFKA_RESP_ERR_NO_ERROR &&
		    e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
			snprintf(err, err_len, "DeleteTopics %s: %s", topic, rd_kafka_err2str(e));
			ret = -EIO;
			goto out;
		}
	}
out:
	admin_request__close(&a);
	return ret;
}

int kafka__delete_group(const struct kafka_settings *settings, const char *group, int timeout_ms,
			char *err, size_t err_len)
{
	rd_kafka_DeleteGroup_t *delete_group;
	const rd_kafka_group_result_t **results;
	struct admin_request a;
	size_t count = 0;
	int ret;

	if (!group)
		return -EINVAL;
	ret = admin_request__open(&a, settings, RD_KAFKA_ADMIN_OP_DELETEGROUPS, timeout_ms, false,
				  err, err_len);
	if (ret)
		return ret;
	delete_group = rd_kafka_DeleteGroup_new(group);
	rd_kafka_DeleteGroups(a.rk, &delete_group, 1, a.options, a.queue);
	rd_kafka_DeleteGroup_destroy(delete_group);
	ret = admin_answer(&a, RD_KAFKA_EVENT_DELETEGROUPS_RESULT, timeout_ms, "DeleteGroups",
			   group, err, err_len);
	if (ret)
		goto out;
	results = rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(a.event),
						      &count);
	for (size_t i = 0; i < count; i++) {
		const rd_kafka_error_t *e = rd_kafka_group_result_error(results[i]);

		if (e && rd_kafka_error_code(e) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
			snprintf(err, err_len, "DeleteGroups %s: %s", group,
				 rd_kafka_error_string(e));
			ret = -EIO;
			goto out;
		}
	}
out:
	admin_request__close(&a);
	return ret;
}
