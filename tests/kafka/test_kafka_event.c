/* Unit tests of the event codec (lib/kafka/event.c) and of its agreement
 * with the JSON Schema files in docs/events/. No broker needed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "warren/ids.h"
#include "warren/kafka.h"

static const char *const all_types[] = {
    "create",	 "kill",     "set_timeout", "update_network",  "pause",
    "resume",	 "snapshot", "created",	    "failed",	       "killed",
    "timed_out", "paused",   "resumed",	    "network_updated", "snapshotted"};
#define TYPE_COUNT (sizeof(all_types) / sizeof(all_types[0]))

static char reason[KAFKA_EVENT_REASON_MAX];

static enum kafka_event_error decode_json(json_t *root)
{
	struct kafka_event ev;
	char *text = json_dumps(root, JSON_COMPACT);
	enum kafka_event_error error;

	assert_non_null(text);
	reason[0] = '\0';
	error = kafka_event__decode(text, strlen(text), &ev, reason, sizeof(reason));
	if (error == KAFKA_EVENT_OK)
		kafka_event__clear(&ev);
	else
		assert_true(strlen(reason) > 0);
	free(text);
	return error;
}

static enum kafka_event_error decode_text(const char *text)
{
	struct kafka_event ev;
	enum kafka_event_error error;

	reason[0] = '\0';
	error = kafka_event__decode(text, strlen(text), &ev, reason, sizeof(reason));
	if (error == KAFKA_EVENT_OK)
		kafka_event__clear(&ev);
	else
		assert_true(strlen(reason) > 0);
	return error;
}

static json_t *valid_create(void)
{
	return json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:i, s:{s:s}}}", "version", 1,
			 "type", "create", "request_id", "6f1c2b9e-3d4a-4c5b-9e8f-0a1b2c3d4e5f",
			 "team_id", "team-1", "sandbox_id", "iabcdefghij0123456789", "sent_at",
			 "2026-11-26T23:59:00.123Z", "spec", "template_id", "base", "timeout_s",
			 300, "metadata", "owner", "test");
}

static void test_command_round_trip(void **state)
{
	struct kafka_event ev, back;
	char sandbox_id[IDS_SANDBOX_ID_LEN + 1];
	json_t *spec =
	    json_pack("{s:s, s:i, s:b, s:{s:s}, s:{s:[s], s:[s]}}", "template_id", "base",
		      "timeout_s", 300, "secure", 1, "env_vars", "LANG", "C.UTF-8", "network",
		      "allow_out", "example.com", "deny_out", "0.0.0.0/0");
	char *text;

	(void)state;
	assert_int_equal(ids__sandbox_id(sandbox_id), 0);
	assert_int_equal(kafka_event__init_command(&ev, KAFKA_EVENT_CREATE, "team-1", sandbox_id,
						   spec, reason, sizeof(reason)),
			 KAFKA_EVENT_OK);
	assert_true(ids__is_uuid(ev.request_id));
	assert_true(ev.sent_at_ms > 0);
	text = kafka_event__encode(&ev, NULL, reason, sizeof(reason));
	assert_non_null(text);
	assert_int_equal(kafka_event__decode(text, strlen(text), &back, reason, sizeof(reason)),
			 KAFKA_EVENT_OK);
	assert_int_equal(back.version, 1);
	assert_int_equal(back.type, KAFKA_EVENT_CREATE);
	assert_string_equal(back.request_id, ev.request_id);
	assert_string_equal(back.team_id, "team-1");
	assert_string_equal(back.sandbox_id, sandbox_id);
	assert_string_equal(back.sent_at, ev.sent_at);
	assert_true(back.sent_at_ms == ev.sent_at_ms);
	assert_true(json_equal(back.spec, ev.spec));
	assert_null(back.result);
	free(text);
	kafka_event__clear(&back);
	kafka_event__clear(&ev);
}

static void test_result_round_trip(void **state)
{
	struct kafka_event command, result, back;
	char *text;

	(void)state;
	assert_int_equal(kafka_event__init_command(&command, KAFKA_EVENT_KILL, "team-1",
						   "iabcdefghij0123456789", NULL, reason,
						   sizeof(reason)),
			 KAFKA_EVENT_OK);
	assert_int_equal(
	    kafka_event__init_result(&result, KAFKA_EVENT_FAILED, &command, "worker-1",
				     json_pack("{s:s, s:i, s:s}", "command", "kill", "code", 404,
					       "message", "no such sandbox"),
				     reason, sizeof(reason)),
	    KAFKA_EVENT_OK);
	text = kafka_event__encode(&result, NULL, reason, sizeof(reason));
	assert_non_null(text);
	assert_int_equal(kafka_event__decode(text, strlen(text), &back, reason, sizeof(reason)),
			 KAFKA_EVENT_OK);
	assert_int_equal(back.type, KAFKA_EVENT_FAILED);
	assert_false(kafka_event__is_command(back.type));
	assert_string_equal(back.request_id, command.request_id);
	assert_string_equal(back.host_id, "worker-1");
	assert_int_equal(json_integer_value(json_object_get(back.result, "code")), 404);
	assert_null(back.spec);
	free(text);
	kafka_event__clear(&back);
	kafka_event__clear(&result);
	kafka_event__clear(&command);

	/* A result's own fields are validated as well. */
	assert_int_equal(kafka_event__init_command(
			     &command, KAFKA_EVENT_CREATE, "team-1", "iabcdefghij0123456789",
			     json_pack("{s:s, s:i}", "template_id", "base", "timeout_s", 5), reason,
			     sizeof(reason)),
			 KAFKA_EVENT_OK);
	assert_int_equal(kafka_event__init_result(
			     &result, KAFKA_EVENT_CREATED, &command, "worker-1",
			     json_pack("{s:s}", "template_id", "base"), reason, sizeof(reason)),
			 KAFKA_EVENT_ERR_MISSING_FIELD);
	assert_non_null(strstr(reason, "result.envd_version"));
	assert_int_equal(kafka_event__init_result(&result, KAFKA_EVENT_CREATED, &command,
						  "bad host/name", NULL, reason, sizeof(reason)),
			 KAFKA_EVENT_ERR_BAD_VALUE);
	kafka_event__clear(&command);
}

static void test_rejection_reasons(void **state)
{
	json_t *root;
	char *big;

	(void)state;
	root = valid_create();
	assert_int_equal(decode_json(root), KAFKA_EVENT_OK);

	/* missing field */
	json_object_del(root, "request_id");
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_MISSING_FIELD);
	assert_non_null(strstr(reason, "request_id"));
	json_decref(root);
	root = valid_create();
	json_object_del(json_object_get(root, "spec"), "template_id");
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_MISSING_FIELD);
	assert_non_null(strstr(reason, "spec.template_id"));
	json_decref(root);

	/* wrong type */
	root = valid_create();
	json_object_set_new(root, "version", json_string("1"));
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_WRONG_TYPE);
	assert_non_null(strstr(reason, "version"));
	json_object_set_new(root, "version", json_integer(1));
	json_object_set_new(json_object_get(root, "spec"), "timeout_s", json_string("300"));
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_WRONG_TYPE);
	assert_non_null(strstr(reason, "spec.timeout_s"));
	json_object_set_new(json_object_get(root, "spec"), "timeout_s", json_integer(300));
	json_object_set_new(json_object_get(root, "spec"), "metadata", json_pack("{s:i}", "a", 1));
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_WRONG_TYPE);
	json_object_set_new(root, "spec", json_array());
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_WRONG_TYPE);
	json_decref(root);

	/* unknown version: neither older nor newer is accepted */
	root = valid_create();
	json_object_set_new(root, "version", json_integer(2));
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_UNKNOWN_VERSION);
	assert_non_null(strstr(reason, "version 2"));
	json_object_set_new(root, "version", json_integer(0));
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_UNKNOWN_VERSION);
	json_decref(root);

	/* unknown type */
	root = valid_create();
	json_object_set_new(root, "type", json_string("explode"));
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_UNKNOWN_TYPE);
	assert_non_null(strstr(reason, "explode"));
	/* Hostile text quoted in a reason never carries control characters. */
	json_object_set_new(root, "type", json_string("evil\nFAKE LOG LINE\r\x1b[2J"));
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_UNKNOWN_TYPE);
	for (const char *c = reason; *c; c++)
		assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
	assert_non_null(strstr(reason, "evil?FAKE"));
	json_decref(root);

	/* bad values */
	root = valid_create();
	json_object_set_new(root, "request_id", json_string("not-a-uuid"));
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_BAD_VALUE);
	json_object_set_new(root, "request_id",
			    json_string("6f1c2b9e-3d4a-4c5b-9e8f-0a1b2c3d4e5f"));
	json_object_set_new(root, "sandbox_id", json_string("../../etc"));
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_BAD_VALUE);
	json_object_set_new(root, "sandbox_id", json_string("iabcdefghij0123456789"));
	json_object_set_new(root, "sent_at", json_string("yesterday"));
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_BAD_VALUE);
	json_object_set_new(root, "sent_at", json_string("2026-11-26T23:59:00+01:00"));
	assert_int_equal(decode_json(root), KAFKA_EVENT_OK);
	json_object_set_new(json_object_get(root, "spec"), "timeout_s", json_integer(0));
	assert_int_equal(decode_json(root), KAFKA_EVENT_ERR_BAD_VALUE);
	json_decref(root);

	/* not JSON, not an object */
	assert_int_equal(decode_text("{\"version\": 1,"), KAFKA_EVENT_ERR_NOT_JSON);
	assert_int_equal(decode_text("\xff\xfe garbage"), KAFKA_EVENT_ERR_NOT_JSON);
	assert_int_equal(decode_text(""), KAFKA_EVENT_ERR_NOT_JSON);
	assert_int_equal(decode_text("{\"version\":1,\"version\":1}"), KAFKA_EVENT_ERR_NOT_JSON);
	assert_int_equal(decode_text("[1, 2]"), KAFKA_EVENT_ERR_NOT_OBJECT);

	/* oversized: refused before parsing, even when it is valid JSON */
	big = malloc(KAFKA_EVENT_MAX_BYTES + 2);
	assert_non_null(big);
	memset(big, ' ', KAFKA_EVENT_MAX_BYTES + 1);
	big[0] = '{';
	big[KAFKA_EVENT_MAX_BYTES] = '}';
	big[KAFKA_EVENT_MAX_BYTES + 1] = '\0';
	assert_int_equal(decode_text(big), KAFKA_EVENT_ERR_OVERSIZED);
	assert_non_null(strstr(reason, "exceeds"));
	free(big);

	assert_string_equal(kafka_event__error_name(KAFKA_EVENT_ERR_UNKNOWN_VERSION),
			    "unknown_version");
	assert_string_equal(kafka_event__error_name(KAFKA_EVENT_ERR_NOT_JSON), "not_json");
}

static void test_encode_refuses_invalid(void **state)
{
	struct kafka_event ev;
	enum kafka_event_error error;

	(void)state;
	assert_int_equal(
	    kafka_event__init_command(&ev, KAFKA_EVENT_SET_TIMEOUT, "team-1", "not-a-sandbox",
				      json_pack("{s:i}", "timeout_s", 10), reason, sizeof(reason)),
	    KAFKA_EVENT_ERR_BAD_VALUE);
	assert_null(ev.spec);
	assert_int_equal(kafka_event__init_command(&ev, KAFKA_EVENT_CREATED, "team-1",
						   "iabcdefghij0123456789", NULL, reason,
						   sizeof(reason)),
			 KAFKA_EVENT_ERR_UNKNOWN_TYPE);
	assert_int_equal(kafka_event__init_command(
			     &ev, KAFKA_EVENT_SET_TIMEOUT, "team-1", "iabcdefghij0123456789",
			     json_pack("{s:i}", "timeout_s", 10), reason, sizeof(reason)),
			 KAFKA_EVENT_OK);
	ev.version = 7;
	assert_null(kafka_event__encode(&ev, &error, reason, sizeof(reason)));
	assert_int_equal(error, KAFKA_EVENT_ERR_UNKNOWN_VERSION);
	kafka_event__clear(&ev);
	/* Too-long identifiers are refused, not truncated. */
	assert_int_equal(
	    kafka_event__init_command(
		&ev, KAFKA_EVENT_KILL,
		"team-0123456789012345678901234567890123456789012345678901234567890123456789",
		"iabcdefghij0123456789", NULL, reason, sizeof(reason)),
	    KAFKA_EVENT_ERR_BAD_VALUE);
}

static json_t *wrong_value_for(const json_t *property)
{
	const char *type = json_string_value(json_object_get(property, "type"));

	if (!type)
		return NULL;
	if (strcmp(type, "string") == 0)
		return json_integer(42);
	if (strcmp(type, "integer") == 0)
		return json_string("42");
	if (strcmp(type, "boolean") == 0)
		return json_integer(1);
	if (strcmp(type, "object") == 0)
		return json_string("x");
	if (strcmp(type, "array") == 0)
		return json_integer(1);
	return NULL;
}

/* Every docs/events/<type>.schema.json: its example decodes; dropping any
 * required member (envelope or body) gives missing_field; giving any body
 * property a value of another JSON type gives wrong_type. */
static void test_schema_files_agree(void **state)
{
	const char *source = getenv("WARREN_SOURCE_DIR");
	size_t checked_required = 0, checked_types = 0;

	(void)state;
	assert_non_null(source);
	for (size_t t = 0; t < TYPE_COUNT; t++) {
		char path[4096];
		json_error_t error;
		json_t *schema, *example, *required, *body_schema, *properties, *value;
		const char *body_name, *key;
		size_t i;

		snprintf(path, sizeof(path), "%s/docs/events/%s.schema.json", source, all_types[t]);
		schema = json_load_file(path, 0, &error);
		if (!schema)
			fail_msg("%s: %s", path, error.text);
		assert_int_equal(kafka_event__type_from_name(all_types[t]), (int)t + 1);
		assert_string_equal(
		    kafka_event__type_name(kafka_event__type_from_name(all_types[t])),
		    all_types[t]);
		example = json_array_get(json_object_get(schema, "examples"), 0);
		assert_non_null(example);
		if (decode_json(example) != KAFKA_EVENT_OK)
			fail_msg("%s: example refused: %s", path, reason);
		body_name = kafka_event__is_command(kafka_event__type_from_name(all_types[t]))
				? "spec"
				: "result";
		json_array_foreach(json_object_get(schema, "required"), i, value)
		{
			json_t *copy = json_deep_copy(example);
			json_object_del(copy, json_string_value(value));
			if (decode_json(copy) != KAFKA_EVENT_ERR_MISSING_FIELD)
				fail_msg("%s: dropping %s not refused", path,
					 json_string_value(value));
			json_decref(copy);
			checked_required++;
		}
		body_schema = json_object_get(json_object_get(schema, "properties"), body_name);
		required = json_object_get(body_schema, "required");
		json_array_foreach(required, i, value)
		{
			json_t *copy = json_deep_copy(example);
			json_object_del(json_object_get(copy, body_name), json_string_value(value));
			if (decode_json(copy) != KAFKA_EVENT_ERR_MISSING_FIELD)
				fail_msg("%s: dropping %s.%s not refused", path, body_name,
					 json_string_value(value));
			json_decref(copy);
			checked_required++;
		}
		properties = json_object_get(body_schema, "properties");
		json_object_foreach(properties, key, value)
		{
			json_t *copy = json_deep_copy(example);
			json_t *wrong = wrong_value_for(value);
			assert_non_null(wrong);
			json_object_set_new(json_object_get(copy, body_name), key, wrong);
			if (decode_json(copy) != KAFKA_EVENT_ERR_WRONG_TYPE)
				fail_msg("%s: %s.%s of the wrong type not refused (%s)", path,
					 body_name, key, reason);
			json_decref(copy);
			checked_types++;
		}
		json_decref(schema);
	}
	print_message("checked %zu required members and %zu property types\n", checked_required,
		      checked_types);
	assert_true(checked_required > 90);
	assert_true(checked_types > 20);
}

static void test_topic_names(void **state)
{
	char topic[KAFKA_TOPIC_NAME_MAX + 1], id[128];

	(void)state;
	assert_int_equal(kafka__host_topic("worker-1", topic, sizeof(topic)), 0);
	assert_string_equal(topic, "warren.host.worker-1.commands");
	assert_int_equal(kafka__host_topic("bad/host", topic, sizeof(topic)), -22);
	assert_int_equal(kafka__host_topic("", topic, sizeof(topic)), -22);
	assert_int_equal(kafka__host_topic("worker-1", topic, 10), -36);
	assert_int_equal(kafka__runtime_topic("vm", topic, sizeof(topic)), 0);
	assert_string_equal(topic, "warren.sandbox.commands.vm");
	assert_int_equal(kafka__runtime_topic("jail", topic, sizeof(topic)), 0);
	assert_string_equal(topic, "warren.sandbox.commands.jail");
	assert_int_equal(kafka__runtime_topic("qemu", topic, sizeof(topic)), -22);
	assert_int_equal(kafka__runtime_topic(NULL, topic, sizeof(topic)), -22);
	assert_int_equal(kafka__runtime_topic("vm", topic, 8), -36);
	assert_string_equal(KAFKA_TOPIC_SANDBOX_COMMANDS, "warren.sandbox.commands");
	assert_string_equal(KAFKA_TOPIC_DLQ, "warren.sandbox.dlq");
	assert_int_equal(kafka__client_id(&(struct kafka_settings){0}, "api", id, sizeof(id)), 0);
	assert_non_null(strstr(id, "warren-api-"));
	assert_int_equal(kafka__client_id(&(struct kafka_settings){.client_id_prefix = "edge"},
					  "api", id, sizeof(id)),
			 0);
	assert_non_null(strstr(id, "edge-api-"));
}

/* The kafka_* settings come from the configuration into one typed struct
 * (lib/kafka itself reads no setting). */
static void test_settings_from_config(void **state)
{
	struct kafka_settings settings;
	char dir[] = "/tmp/warren-kafka-settings-XXXXXX", path[256];
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/password", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("s3cret-word\n", f);
	fclose(f);
	setenv("WARREN_KAFKA_BROKERS", "broker.example:9093", 1);
	setenv("WARREN_KAFKA_SECURITY_PROTOCOL", "sasl_ssl", 1);
	setenv("WARREN_KAFKA_SASL_USERNAME", "worker-h1", 1);
	setenv("WARREN_KAFKA_SASL_PASSWORD_FILE", path, 1);
	setenv("WARREN_KAFKA_SSL_CA_FILE", "/etc/ssl/certs/ca-certificates.crt", 1);
	kafka_settings__from_config(&settings);
	assert_string_equal(settings.brokers, "broker.example:9093");
	assert_int_equal(settings.security, KAFKA_SECURITY_SASL_SSL);
	assert_string_equal(settings.sasl_mechanism, "SCRAM-SHA-512");
	assert_string_equal(settings.sasl_username, "worker-h1");
	assert_string_equal(settings.sasl_password, "s3cret-word");
	assert_string_equal(settings.ssl_ca_file, "/etc/ssl/certs/ca-certificates.crt");
	unsetenv("WARREN_KAFKA_SECURITY_PROTOCOL");
	kafka_settings__from_config(&settings);
	assert_int_equal(settings.security, KAFKA_SECURITY_PLAINTEXT);
	unsetenv("WARREN_KAFKA_BROKERS");
	unsetenv("WARREN_KAFKA_SASL_USERNAME");
	unsetenv("WARREN_KAFKA_SASL_PASSWORD_FILE");
	unsetenv("WARREN_KAFKA_SSL_CA_FILE");
	unlink(path);
	rmdir(dir);
}

/* A sasl_ssl client is configured for TLS + SCRAM; one without user or
 * password is refused before it connects, and no error names the password. */
static void test_secure_client_settings(void **state)
{
	struct kafka_settings secure = {
	    .brokers = "127.0.0.1:9",
	    .security = KAFKA_SECURITY_SASL_SSL,
	    .sasl_username = "api",
	    .sasl_password = "pa55-word",
	};
	struct kafka_settings no_password = secure;
	struct kafka_settings bad_ca = secure;
	struct kafka_producer *producer;
	char err[256] = "";

	(void)state;
	producer = kafka_producer__new(&secure, NULL, err, sizeof(err));
	assert_non_null(producer);
	kafka_producer__free(producer);
	no_password.sasl_password = NULL;
	assert_null(kafka_producer__new(&no_password, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "kafka_sasl_password"));
	assert_null(kafka_consumer__new(
	    &(struct kafka_consumer_config){.settings = &no_password, .group_id = "g"}, err,
	    sizeof(err)));
	assert_int_equal(kafka__delete_topic(&no_password, "t", 1000, err, sizeof(err)), -EINVAL);
	bad_ca.ssl_ca_file = "/nonexistent/ca.pem";
	assert_null(kafka_producer__new(&bad_ca, NULL, err, sizeof(err)));
	assert_null(strstr(err, "pa55-word"));
	assert_null(kafka_producer__new(NULL, NULL, err, sizeof(err)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_settings_from_config),
	    cmocka_unit_test(test_secure_client_settings),
	    cmocka_unit_test(test_command_round_trip),
	    cmocka_unit_test(test_result_round_trip),
	    cmocka_unit_test(test_rejection_reasons),
	    cmocka_unit_test(test_encode_refuses_invalid),
	    cmocka_unit_test(test_schema_files_agree),
	    cmocka_unit_test(test_topic_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
