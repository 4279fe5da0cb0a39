/* kafka_event: the JSON events of the Kafka contract (ARCHITECTURE.md,
 * "Kafka contract"; one JSON Schema per type in docs/events/). Commands
 * are {version, type, request_id, team_id, sandbox_id, spec, sent_at};
 * results are {version, type, request_id, team_id, sandbox_id, host_id,
 * result, sent_at}. Decoding treats every byte as hostile and says why it
 * refused an event; encoding validates with the same rules. */
#ifndef WARREN_KAFKA_EVENT_H
#define WARREN_KAFKA_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "warren/ids.h"

#define KAFKA_EVENT_VERSION	1	     /* the only version understood */
#define KAFKA_EVENT_MAX_BYTES	(256 * 1024) /* larger payloads are refused */
#define KAFKA_EVENT_TEAM_ID_MAX 64
#define KAFKA_EVENT_HOST_ID_MAX 63
#define KAFKA_EVENT_REASON_MAX	256

enum kafka_event_type {
	KAFKA_EVENT_UNKNOWN = 0,
	/* commands (API server -> worker) */
	KAFKA_EVENT_CREATE,
	KAFKA_EVENT_KILL,
	KAFKA_EVENT_SET_TIMEOUT,
	KAFKA_EVENT_UPDATE_NETWORK,
	KAFKA_EVENT_PAUSE,
	KAFKA_EVENT_RESUME,
	KAFKA_EVENT_SNAPSHOT, /* the sandbox's files as a new template (createSnapshot) */
	/* results (worker -> warren.sandbox.events) */
	KAFKA_EVENT_CREATED,
	KAFKA_EVENT_FAILED,
	KAFKA_EVENT_KILLED,
	KAFKA_EVENT_TIMED_OUT,
	KAFKA_EVENT_PAUSED,
	KAFKA_EVENT_RESUMED,
	KAFKA_EVENT_NETWORK_UPDATED,
	KAFKA_EVENT_SNAPSHOTTED,
	KAFKA_EVENT_TYPE_COUNT,
};

/* Why an event was refused; the name (kafka_event__error_name) is the
 * "reason_code" of a dead-letter record. */
enum kafka_event_error {
	KAFKA_EVENT_OK = 0,
	KAFKA_EVENT_ERR_OVERSIZED,	 /* "oversized": > KAFKA_EVENT_MAX_BYTES */
	KAFKA_EVENT_ERR_NOT_JSON,	 /* "not_json": not parseable (or duplicate keys) */
	KAFKA_EVENT_ERR_NOT_OBJECT,	 /* "not_object": JSON but not an object */
	KAFKA_EVENT_ERR_MISSING_FIELD,	 /* "missing_field" */
	KAFKA_EVENT_ERR_WRONG_TYPE,	 /* "wrong_type": a field of the wrong JSON type */
	KAFKA_EVENT_ERR_BAD_VALUE,	 /* "bad_value": right type, invalid value */
	KAFKA_EVENT_ERR_UNKNOWN_VERSION, /* "unknown_version" */
	KAFKA_EVENT_ERR_UNKNOWN_TYPE,	 /* "unknown_type" */
};

struct kafka_event {
	int version;
	enum kafka_event_type type;
	char request_id[IDS_UUID_LEN + 1]; /* idempotency key (UUID) */
	char team_id[KAFKA_EVENT_TEAM_ID_MAX + 1];
	char sandbox_id[IDS_SANDBOX_ID_LEN + 1];   /* also the Kafka key */
	char host_id[KAFKA_EVENT_HOST_ID_MAX + 1]; /* results only, else "" */
	char sent_at[40];			   /* RFC 3339 UTC text */
	int64_t sent_at_ms;			   /* the same, ms since the epoch */
	json_t *spec;	/* commands: owned reference to the spec object, else NULL */
	json_t *result; /* results: owned reference to the result object, else NULL */
};

/* The wire name of a type ("create", "timed_out", ...), or "unknown". */
const char *kafka_event__type_name(enum kafka_event_type type);
/* The type for a wire name, KAFKA_EVENT_UNKNOWN when it is not one. */
enum kafka_event_type kafka_event__type_from_name(const char *name);
/* True for the command types (create .. snapshot), false for results. */
bool kafka_event__is_command(enum kafka_event_type type);
/* The reason code of an error ("missing_field", ...); "ok" for 0. */
const char *kafka_event__error_name(enum kafka_event_error error);

/* Fills ev as a fresh command: new request_id (UUID v4), sent_at = now,
 * spec (reference stolen; NULL means {}). Validates it; on error ev is
 * cleared and the reason written. Returns KAFKA_EVENT_OK or the error. */
enum kafka_event_error kafka_event__init_command(struct kafka_event *ev, enum kafka_event_type type,
						 const char *team_id, const char *sandbox_id,
						 json_t *spec, char *reason, size_t reason_len);
/* Fills ev as the result of command (same request_id, team and sandbox),
 * produced by host_id, sent_at = now; result reference stolen (NULL = {}).
 * Returns KAFKA_EVENT_OK or the error (ev cleared, reason written). */
enum kafka_event_error kafka_event__init_result(struct kafka_event *ev, enum kafka_event_type type,
						const struct kafka_event *command,
						const char *host_id, json_t *result, char *reason,
						size_t reason_len);
/* Releases the spec/result references and zeroes ev. Safe on a zeroed ev. */
void kafka_event__clear(struct kafka_event *ev);

/* Parses and validates len bytes (not NUL-terminated) into ev (which is
 * overwritten, not cleared first). On error ev is left zeroed and a
 * human-readable reason ("missing field \"spec.template_id\"") written. */
enum kafka_event_error kafka_event__decode(const void *payload, size_t len, struct kafka_event *ev,
					   char *reason, size_t reason_len);
/* Validates ev and serializes it compactly; the caller frees the string.
 * NULL on error with the reason written (and *error set when non-NULL). */
char *kafka_event__encode(const struct kafka_event *ev, enum kafka_event_error *error, char *reason,
			  size_t reason_len);

#endif
