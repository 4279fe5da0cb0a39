/* query: the query parameters of the list endpoints (docs/e2b-compatibility.md,
 * GET /sandboxes and GET /v2/sandboxes). Pure; every byte hostile. */
#ifndef WARREN_API_QUERY_H
#define WARREN_API_QUERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "validate.h"

/* Parses E2B's metadata filter: the (already URL-decoded once) value of
 * ?metadata=, itself a query string "k1=v1&k2=v2" (URLSearchParams) whose
 * keys and values were encodeURIComponent'ed first, so each is decoded
 * twice, as E2B's server does. Writes a new object {k1: v1, ...} into *out
 * (NULL for an absent/empty filter). 0, or -1 with err (400). */
int query__metadata(const char *value, json_t **out, struct api_error *err);

/* Adds the states of one ?state= value ("running" or "running,paused")
 * to *mask (STORAGE_STATE_BIT bits). E2B's two states only: any other
 * name is -1 with err (400). */
int query__states(const char *value, uint32_t *mask, struct api_error *err);

/* ?limit=: an integer 1..100; absent -> 100. 0, or -1 with err (400). */
int query__limit(const char *value, int *out, struct api_error *err);

/* ?order=: "asc" or "desc" (start time); absent -> desc. 0, or -1 (400). */
int query__order(const char *value, bool *ascending, struct api_error *err);

/* ?startedAfter= / ?startedBefore= (name given for the message): an RFC
 * 3339 time -> ms since the epoch; absent -> *out_ms = 0 (no bound).
 * 0, or -1 with err (400). */
int query__time(const char *name, const char *value, int64_t *out_ms, struct api_error *err);

/* ?template=: a template id or alias (the templates table's alphabet,
 * 1..128 characters); absent or empty -> NULL. 0, or -1 (400). */
int query__template(const char *value, const char **out, struct api_error *err);

/* ?start= / ?end= of the metrics endpoint: Unix seconds (0 ..
 * 253402300799); absent -> *out_s = -1. 0, or -1 with err (400). */
int query__unix_seconds(const char *name, const char *value, int64_t *out_s, struct api_error *err);

/* ?sandbox_ids= of GET /sandboxes/metrics: a comma list of 1..100 ids
 * (duplicates dropped); each must look like a sandbox id. Writes up to
 * max ids into ids (each IDS_SANDBOX_ID_LEN + 1 bytes). 0, or -1 (400). */
int query__sandbox_ids(const char *value, char (*ids)[24], size_t max, size_t *count,
		       struct api_error *err);

/* ?level= of the logs: debug | info | warn | error; absent -> NULL. */
int query__log_level(const char *value, const char **out, struct api_error *err);
/* ?direction= of the logs: "forward" | "backward"; absent -> forward. */
int query__direction(const char *value, bool *forward, struct api_error *err);
/* An integer parameter within min..max; absent -> fallback. */
int query__int_range(const char *name, const char *value, int64_t min, int64_t max,
		     int64_t fallback, int64_t *out, struct api_error *err);

/* Decodes %XX and '+' in place-free fashion into out (size out_len).
 * -1 for a bad escape, an embedded NUL or too long. */
int query__url_decode(const char *in, size_t in_len, char *out, size_t out_len);

#endif
