/* kafka_event: encode/decode and validation of the contract's events.
 * The field tables below are the C side of the docs/events/ schema files;
 * tests/kafka/test_kafka_event.c checks the two agree. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/kafka_event.h"

enum field_kind {
	FIELD_STRING,	    /* non-empty string */
	FIELD_POSITIVE_INT, /* integer > 0 */
	FIELD_HTTP_CODE,    /* integer 100..599 */
	FIELD_BOOL,
	FIELD_STRING_MAP,   /* object whose values are strings */
	FIELD_STRING_ARRAY, /* array of strings */
	FIELD_TIME,	    /* RFC 3339 string */
	FIELD_COMMAND_NAME, /* one of the command type names */
	FIELD_NETWORK,	    /* object with network_fields */
};

struct field {
	const char *name;
	enum field_kind kind;
	bool required;
};

/* E2B's network object, snake_cased (docs/e2b-compatibility.md, POST /sandboxes). */
static const struct field network_fields[] = {
    {"allow_out", FIELD_STRING_ARRAY, false},
    {"deny_out", FIELD_STRING_ARRAY, false},
    {"allow_public_traffic", FIELD_BOOL, false},
    {"mask_request_host", FIELD_STRING, false},
    {NULL, 0, false},
};

/* docs/events/create.schema.json, "spec" */
static const struct field create_fields[] = {
    {"template_id", FIELD_STRING, true},
    {"timeout_s", FIELD_POSITIVE_INT, true},
    {"alias", FIELD_STRING, false},
    {"secure", FIELD_BOOL, false},
    {"allow_internet_access", FIELD_BOOL, false},
    {"auto_pause", FIELD_BOOL, false},
    {"metadata", FIELD_STRING_MAP, false},
    {"env_vars", FIELD_STRING_MAP, false},
    {"network", FIELD_NETWORK, false},
    {"runtime", FIELD_STRING, false},
    {"volume_mounts", FIELD_POSITIVE_INT, false},
    {NULL, 0, false},
};
static const struct field no_fields[] = {{NULL, 0, false}};
static const struct field set_timeout_fields[] = {
    {"timeout_s", FIELD_POSITIVE_INT, true},
    {NULL, 0, false},
};
static const struct field update_network_fields[] = {
    {"network", FIELD_NETWORK, true},
    {NULL, 0, false},
};
static const struct field resume_fields[] = {
    {"timeout_s", FIELD_POSITIVE_INT, false},
    {"auto_pause", FIELD_BOOL, false},
    {NULL, 0, false},
};
static const struct field snapshot_fields[] = {
    {"snapshot_id", FIELD_STRING, true},
    {"template_id", FIELD_STRING, true},
    {"max_bytes", FIELD_POSITIVE_INT, false}, /* the team's quota left */
    {"name", FIELD_STRING, false},
    {NULL, 0, false},
};
static const struct field snapshotted_fields[] = {
    {"snapshot_id", FIELD_STRING, true},
    {"bytes", FIELD_POSITIVE_INT, false},
    {NULL, 0, false},
};
static const struct field created_fields[] = {
    {"template_id", FIELD_STRING, true}, {"envd_version", FIELD_STRING, true},
    {"end_at", FIELD_TIME, true},	 {"alias", FIELD_STRING, false},
    {"client_id", FIELD_STRING, false},	 {NULL, 0, false},
};
static const struct field failed_fields[] = {
    {"command", FIELD_COMMAND_NAME, true},
    {"code", FIELD_HTTP_CODE, true},
    {"message", FIELD_STRING, true},
    {NULL, 0, false},
};
static const struct field killed_fields[] = {
    {"reason", FIELD_STRING, false},
    {NULL, 0, false},
};
static const struct field end_at_fields[] = {
    {"end_at", FIELD_TIME, true},
    {NULL, 0, false},
};
static const struct field paused_fields[] = {
    {"snapshot_id", FIELD_STRING, false},
    {"reason", FIELD_STRING, false}, /* "timeout": paused at end_at */
    {NULL, 0, false},
};

static const struct {
	const char *name;
	const struct field *fields; /* of "spec" (commands) or "result" (results) */
} event_types[KAFKA_EVENT_TYPE_COUNT] = {
    [KAFKA_EVENT_UNKNOWN] = {"unknown", no_fields},
    [KAFKA_EVENT_CREATE] = {"create", create_fields},
    [KAFKA_EVENT_KILL] = {"kill", no_fields},
    [KAFKA_EVENT_SET_TIMEOUT] = {"set_timeout", set_timeout_fields},
    [KAFKA_EVENT_UPDATE_NETWORK] = {"update_network", update_network_fields},
    [KAFKA_EVENT_PAUSE] = {"pause", no_fields},
    [KAFKA_EVENT_RESUME] = {"resume", resume_fields},
    [KAFKA_EVENT_SNAPSHOT] = {"snapshot", snapshot_fields},
    [KAFKA_EVENT_CREATED] = {"created", created_fields},
    [KAFKA_EVENT_FAILED] = {"failed", failed_fields},
    [KAFKA_EVENT_KILLED] = {"killed", killed_fields},
    [KAFKA_EVENT_TIMED_OUT] = {"timed_out", end_at_fields},
    [KAFKA_EVENT_PAUSED] = {"paused", paused_fields},
    [KAFKA_EVENT_RESUMED] = {"resumed", end_at_fields},
    [KAFKA_EVENT_NETWORK_UPDATED] = {"network_updated", update_network_fields},
    [KAFKA_EVENT_SNAPSHOTTED] = {"snapshotted", snapshotted_fields},
};

static const char *const error_names[] = {
    [KAFKA_EVENT_OK] = "ok",
    [KAFKA_EVENT_ERR_OVERSIZED] = "oversized",
    [KAFKA_EVENT_ERR_NOT_JSON] = "not_json",
    [KAFKA_EVENT_ERR_NOT_OBJECT] = "not_object",
    [KAFKA_EVENT_ERR_MISSING_FIELD] = "missing_field",
    [KAFKA_EVENT_ERR_WRONG_TYPE] = "wrong_type",
    [KAFKA_EVENT_ERR_BAD_VALUE] = "bad_value",
    [KAFKA_EVENT_ERR_UNKNOWN_VERSION] = "unknown_version",
    [KAFKA_EVENT_ERR_UNKNOWN_TYPE] = "unknown_type",
};

const char *kafka_event__type_name(enum kafka_event_type type)
{
	if ((int)type <= 0 || type >= KAFKA_EVENT_TYPE_COUNT)
		return "unknown";
	return event_types[type].name;
}

enum kafka_event_type kafka_event__type_from_name(const char *name)
{
	if (!name)
		return KAFKA_EVENT_UNKNOWN;
	for (int i = 1; i < KAFKA_EVENT_TYPE_COUNT; i++)
		if (strcmp(event_types[i].name, name) == 0)
			return (enum kafka_event_type)i;
	return KAFKA_EVENT_UNKNOWN;
}

bool kafka_event__is_command(enum kafka_event_type type)
{
	return type >= KAFKA_EVENT_CREATE && type <= KAFKA_EVENT_SNAPSHOT;
}

const char *kafka_event__error_name(enum kafka_event_error error)
{
	if ((int)error < 0 || (size_t)error >= sizeof(error_names) / sizeof(error_names[0]))
		return "unknown_error";
	return error_names[error];
}

void kafka_event__clear(struct kafka_event *ev)
{
	if (!ev)
		return;
	json_decref(ev->spec);
	json_decref(ev->result);
	memset(ev, 0, sizeof(*ev));
}

static enum kafka_event_error fail(enum kafka_event_error error, char *reason, size_t reason_len,
				   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum kafka_event_error fail(enum kafka_event_error error, char *reason, size_t reason_len,
				   const char *fmt, ...)
{
	va_list ap;

	if (reason && reason_len) {
		va_start(ap, fmt);
		vsnprintf(reason, reason_len, fmt, ap);
		va_end(ap);
		/* Reasons quote hostile input and end up in logs and headers. */
		for (char *c = reason; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = '?';
	}
	return error;
}

/* Identifiers that also end up in topic names and log lines. */
static bool is_safe_identifier(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

static enum kafka_event_error validate_fields(const json_t *object, const struct field *fields,
					      const char *path, char *reason, size_t reason_len);

static enum kafka_event_error validate_field(const json_t *value, const struct field *f,
					     const char *path, char *reason, size_t reason_len)
{
	char nested[128];
	const char *key;
	json_t *item;
	size_t index;
	int64_t ms;

	switch (f->kind) {
	case FIELD_STRING:
		if (!json_is_string(value))
			goto wrong_type;
		if (json_string_length(value) == 0)
			return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
				    "field \"%s%s\" must not be empty", path, f->name);
		return KAFKA_EVENT_OK;
	case FIELD_POSITIVE_INT:
	case FIELD_HTTP_CODE:
		if (!json_is_integer(value))
			goto wrong_type;
		if (f->kind == FIELD_POSITIVE_INT && json_integer_value(value) <= 0)
			return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
				    "field \"%s%s\" must be > 0", path, f->name);
		if (f->kind == FIELD_HTTP_CODE &&
		    (json_integer_value(value) < 100 || json_integer_value(value) > 599))
			return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
				    "field \"%s%s\" must be an HTTP status (100..599)", path,
				    f->name);
		return KAFKA_EVENT_OK;
	case FIELD_BOOL:
		if (!json_is_boolean(value))
			goto wrong_type;
		return KAFKA_EVENT_OK;
	case FIELD_STRING_MAP:
		if (!json_is_object(value))
			goto wrong_type;
		json_object_foreach((json_t *)value, key, item)
		{
			if (!json_is_string(item))
				return fail(KAFKA_EVENT_ERR_WRONG_TYPE, reason, reason_len,
					    "field \"%s%s\" must map to strings only", path,
					    f->name);
		}
		return KAFKA_EVENT_OK;
	case FIELD_STRING_ARRAY:
		if (!json_is_array(value))
			goto wrong_type;
		json_array_foreach(value, index, item)
		{
			if (!json_is_string(item))
				return fail(KAFKA_EVENT_ERR_WRONG_TYPE, reason, reason_len,
					    "field \"%s%s\" must hold strings only", path, f->name);
		}
		return KAFKA_EVENT_OK;
	case FIELD_TIME:
		if (!json_is_string(value))
			goto wrong_type;
		if (!clock__parse_rfc3339(json_string_value(value), &ms))
			return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
				    "field \"%s%s\" must be an RFC 3339 time", path, f->name);
		return KAFKA_EVENT_OK;
	case FIELD_COMMAND_NAME:
		if (!json_is_string(value))
			goto wrong_type;
		if (!kafka_event__is_command(kafka_event__type_from_name(json_string_value(value))))
			return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
				    "field \"%s%s\" must name a command type", path, f->name);
		return KAFKA_EVENT_OK;
	case FIELD_NETWORK:
		if (!json_is_object(value))
			goto wrong_type;
		snprintf(nested, sizeof(nested), "%s%s.", path, f->name);
		return validate_fields(value, network_fields, nested, reason, reason_len);
	}
	return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len, "field \"%s%s\": bad schema",
		    path, f->name);
wrong_type:
	return fail(KAFKA_EVENT_ERR_WRONG_TYPE, reason, reason_len,
		    "field \"%s%s\" has the wrong type", path, f->name);
}

/* Unknown members are allowed (forward compatibility inside a version). */
static enum kafka_event_error validate_fields(const json_t *object, const struct field *fields,
					      const char *path, char *reason, size_t reason_len)
{
	for (const struct field *f = fields; f->name; f++) {
		const json_t *value = json_object_get(object, f->name);
		enum kafka_event_error error;

		if (!value || json_is_null(value)) {
			if (f->required)
				return fail(KAFKA_EVENT_ERR_MISSING_FIELD, reason, reason_len,
					    "missing field \"%s%s\"", path, f->name);
			continue;
		}
		error = validate_field(value, f, path, reason, reason_len);
		if (error)
			return error;
	}
	return KAFKA_EVENT_OK;
}

/* A required top-level string member; copies it into out (size out_len). */
static enum kafka_event_error envelope_string(const json_t *root, const char *name, char *out,
					      size_t out_len, char *reason, size_t reason_len)
{
	const json_t *value = json_object_get(root, name);

	if (!value || json_is_null(value))
		return fail(KAFKA_EVENT_ERR_MISSING_FIELD, reason, reason_len,
			    "missing field \"%s\"", name);
	if (!json_is_string(value))
		return fail(KAFKA_EVENT_ERR_WRONG_TYPE, reason, reason_len,
			    "field \"%s\" has the wrong type", name);
	if (json_string_length(value) >= out_len ||
	    strlen(json_string_value(value)) != json_string_length(value))
		return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
			    "field \"%s\" is too long or holds NUL", name);
	memcpy(out, json_string_value(value), json_string_length(value) + 1);
	return KAFKA_EVENT_OK;
}

/* The whole contract check: envelope, then the type's spec/result. Fills
 * ev (taking new references) only when everything is valid. */
static enum kafka_event_error validate_root(const json_t *root, struct kafka_event *ev,
					    char *reason, size_t reason_len)
{
	struct kafka_event parsed = {0};
	const char *body_name;
	const json_t *value, *body;
	enum kafka_event_error error;

	if (!json_is_object(root))
		return fail(KAFKA_EVENT_ERR_NOT_OBJECT, reason, reason_len,
			    "event is not a JSON object");
	value = json_object_get(root, "version");
	if (!value || json_is_null(value))
		return fail(KAFKA_EVENT_ERR_MISSING_FIELD, reason, reason_len,
			    "missing field \"version\"");
	if (!json_is_integer(value))
		return fail(KAFKA_EVENT_ERR_WRONG_TYPE, reason, reason_len,
			    "field \"version\" has the wrong type");
	if (json_integer_value(value) != KAFKA_EVENT_VERSION)
		return fail(KAFKA_EVENT_ERR_UNKNOWN_VERSION, reason, reason_len,
			    "unknown version %lld (this build understands %d)",
			    (long long)json_integer_value(value), KAFKA_EVENT_VERSION);
	parsed.version = KAFKA_EVENT_VERSION;

	value = json_object_get(root, "type");
	if (!value || json_is_null(value))
		return fail(KAFKA_EVENT_ERR_MISSING_FIELD, reason, reason_len,
			    "missing field \"type\"");
	if (!json_is_string(value))
		return fail(KAFKA_EVENT_ERR_WRONG_TYPE, reason, reason_len,
			    "field \"type\" has the wrong type");
	parsed.type = kafka_event__type_from_name(json_string_value(value));
	if (parsed.type == KAFKA_EVENT_UNKNOWN)
		return fail(KAFKA_EVENT_ERR_UNKNOWN_TYPE, reason, reason_len,
			    "unknown event type \"%.64s\"", json_string_value(value));

	error = envelope_string(root, "request_id", parsed.request_id, sizeof(parsed.request_id),
				reason, reason_len);
	if (error)
		return error;
	if (!ids__is_uuid(parsed.request_id))
		return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
			    "field \"request_id\" must be a UUID");
	error = envelope_string(root, "team_id", parsed.team_id, sizeof(parsed.team_id), reason,
				reason_len);
	if (error)
		return error;
	if (!is_safe_identifier(parsed.team_id, KAFKA_EVENT_TEAM_ID_MAX))
		return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
			    "field \"team_id\" must be 1-64 of [A-Za-z0-9._-]");
	error = envelope_string(root, "sandbox_id", parsed.sandbox_id, sizeof(parsed.sandbox_id),
				reason, reason_len);
	if (error)
		return error;
	if (!ids__is_sandbox_id(parsed.sandbox_id))
		return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
			    "field \"sandbox_id\" must be a sandbox id (\"i\" + 20 of [a-z0-9])");
	error = envelope_string(root, "sent_at", parsed.sent_at, sizeof(parsed.sent_at), reason,
				reason_len);
	if (error)
		return error;
	if (!clock__parse_rfc3339(parsed.sent_at, &parsed.sent_at_ms))
		return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
			    "field \"sent_at\" must be an RFC 3339 time");

	if (kafka_event__is_command(parsed.type)) {
		body_name = "spec";
	} else {
		body_name = "result";
		error = envelope_string(root, "host_id", parsed.host_id, sizeof(parsed.host_id),
					reason, reason_len);
		if (error)
			return error;
		if (!is_safe_identifier(parsed.host_id, KAFKA_EVENT_HOST_ID_MAX))
			return fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
				    "field \"host_id\" must be 1-63 of [A-Za-z0-9._-]");
	}
	body = json_object_get(root, body_name);
	if (!body || json_is_null(body))
		return fail(KAFKA_EVENT_ERR_MISSING_FIELD, reason, reason_len,
			    "missing field \"%s\"", body_name);
	if (!json_is_object(body))
		return fail(KAFKA_EVENT_ERR_WRONG_TYPE, reason, reason_len,
			    "field \"%s\" has the wrong type", body_name);
	error = validate_fields(body, event_types[parsed.type].fields,
				kafka_event__is_command(parsed.type) ? "spec." : "result.", reason,
				reason_len);
	if (error)
		return error;

	if (ev) {
		if (kafka_event__is_command(parsed.type))
			parsed.spec = json_incref((json_t *)body);
		else
			parsed.result = json_incref((json_t *)body);
		*ev = parsed;
	}
	return KAFKA_EVENT_OK;
}

enum kafka_event_error kafka_event__decode(const void *payload, size_t len, struct kafka_event *ev,
					   char *reason, size_t reason_len)
{
	enum kafka_event_error error;
	json_error_t json_error;
	json_t *root;

	memset(ev, 0, sizeof(*ev));
	if (len > KAFKA_EVENT_MAX_BYTES)
		return fail(KAFKA_EVENT_ERR_OVERSIZED, reason, reason_len,
			    "event of %zu bytes exceeds the limit of %d bytes", len,
			    KAFKA_EVENT_MAX_BYTES);
	if (!payload || len == 0)
		return fail(KAFKA_EVENT_ERR_NOT_JSON, reason, reason_len, "empty payload");
	root = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &json_error);
	if (!root)
		return fail(KAFKA_EVENT_ERR_NOT_JSON, reason, reason_len,
			    "not JSON: %s (line %d, column %d)", json_error.text, json_error.line,
			    json_error.column);
	error = validate_root(root, ev, reason, reason_len);
	json_decref(root);
	return error;
}

char *kafka_event__encode(const struct kafka_event *ev, enum kafka_event_error *error_out,
			  char *reason, size_t reason_len)
{
	enum kafka_event_error error = KAFKA_EVENT_OK;
	bool command = kafka_event__is_command(ev->type);
	json_t *root = NULL, *body;
	char *text = NULL;

	if (ev->type <= KAFKA_EVENT_UNKNOWN || ev->type >= KAFKA_EVENT_TYPE_COUNT) {
		error = fail(KAFKA_EVENT_ERR_UNKNOWN_TYPE, reason, reason_len,
			     "unknown event type %d", (int)ev->type);
		goto out;
	}
	body = command ? ev->spec : ev->result;
	root = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:O}", "version", ev->version, "type",
			 kafka_event__type_name(ev->type), "request_id", ev->request_id, "team_id",
			 ev->team_id, "sandbox_id", ev->sandbox_id, "sent_at", ev->sent_at,
			 command ? "spec" : "result", body ? body : json_null());
	if (!root) {
		error = fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
			     "cannot build the JSON object (invalid UTF-8 in a field?)");
		goto out;
	}
	if (!command && json_object_set_new(root, "host_id", json_string(ev->host_id)) != 0) {
		error = fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len,
			     "field \"host_id\" is not valid UTF-8");
		goto out;
	}
	error = validate_root(root, NULL, reason, reason_len);
	if (error)
		goto out;
	text = json_dumps(root, JSON_COMPACT);
	if (!text) {
		error = fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len, "cannot serialize");
		goto out;
	}
	if (strlen(text) > KAFKA_EVENT_MAX_BYTES) {
		error = fail(KAFKA_EVENT_ERR_OVERSIZED, reason, reason_len,
			     "event of %zu bytes exceeds the limit of %d bytes", strlen(text),
			     KAFKA_EVENT_MAX_BYTES);
		free(text);
		text = NULL;
	}
out:
	json_decref(root);
	if (error_out)
		*error_out = error;
	return text;
}

/* Copies in; a value that does not fit becomes "" so validation refuses it
 * instead of accepting a silently truncated identifier. */
static void copy_bounded(char *out, size_t out_len, const char *in)
{
	if (!in || strlen(in) >= out_len)
		in = "";
	memcpy(out, in, strlen(in) + 1);
}

static void stamp_now(struct kafka_event *ev)
{
	ev->sent_at_ms = clock__realtime_ms();
	clock__format_rfc3339(ev->sent_at_ms, ev->sent_at);
}

enum kafka_event_error kafka_event__init_command(struct kafka_event *ev, enum kafka_event_type type,
						 const char *team_id, const char *sandbox_id,
						 json_t *spec, char *reason, size_t reason_len)
{
	enum kafka_event_error error;
	char *text;

	memset(ev, 0, sizeof(*ev));
	ev->spec = spec ? spec : json_object();
	if (!kafka_event__is_command(type)) {
		error = fail(KAFKA_EVENT_ERR_UNKNOWN_TYPE, reason, reason_len,
			     "type %s is not a command", kafka_event__type_name(type));
		goto err;
	}
	ev->version = KAFKA_EVENT_VERSION;
	ev->type = type;
	if (ids__uuid(ev->request_id) != 0) {
		error = fail(KAFKA_EVENT_ERR_BAD_VALUE, reason, reason_len, "no randomness");
		goto err;
	}
	copy_bounded(ev->team_id, sizeof(ev->team_id), team_id);
	copy_bounded(ev->sandbox_id, sizeof(ev->sandbox_id), sandbox_id);
	stamp_now(ev);
	text = kafka_event__encode(ev, &error, reason, reason_len);
	if (!text)
		goto err;
	free(text);
	return KAFKA_EVENT_OK;
err:
	kafka_event__clear(ev);
	return error;
}

enum kafka_event_error kafka_event__init_result(struct kafka_event *ev, enum kafka_event_type type,
						const struct kafka_event *command,
						const char *host_id, json_t *result, char *reason,
						size_t reason_len)
{
	enum kafka_event_error error;
	char *text;

	memset(ev, 0, sizeof(*ev));
	ev->result = result ? result : json_object();
	if (type < KAFKA_EVENT_CREATED || type >= KAFKA_EVENT_TYPE_COUNT || !command) {
		error = fail(KAFKA_EVENT_ERR_UNKNOWN_TYPE, reason, reason_len,
			     "type %s is not a result", kafka_event__type_name(type));
		goto err;
	}
	ev->version = KAFKA_EVENT_VERSION;
	ev->type = type;
	memcpy(ev->request_id, command->request_id, sizeof(ev->request_id));
	memcpy(ev->team_id, command->team_id, sizeof(ev->team_id));
	memcpy(ev->sandbox_id, command->sandbox_id, sizeof(ev->sandbox_id));
	ev->request_id[sizeof(ev->request_id) - 1] = '\0';
	ev->team_id[sizeof(ev->team_id) - 1] = '\0';
	ev->sandbox_id[sizeof(ev->sandbox_id) - 1] = '\0';
	copy_bounded(ev->host_id, sizeof(ev->host_id), host_id);
	stamp_now(ev);
	text = kafka_event__encode(ev, &error, reason, reason_len);
	if (!text)
		goto err;
	free(text);
	return KAFKA_EVENT_OK;
err:
	kafka_event__clear(ev);
	return error;
}
