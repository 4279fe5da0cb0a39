/* query: the query parameters of the list endpoints (docs/e2b-compatibility.md,
 * GET /sandboxes and GET /v2/sandboxes). Pure; every byte hostile. */
#ifndef WARREN_API_QUERY_H
#define WARREN_API_QUERY_H

#include <jansson.h>
#include <stdint.h>

#include "validate.h"

/* Parses E2B's metadata filter: the (already URL-decoded once) value of
 * ?metadata=, itself a query string "k1=v1&k2=v2" (URLSearchParams) whose
 * keys and values were encodeURIComponent'ed first, so each is decoded
 * twice, as E2B's server does. Writes a new object {k1: v1, ...} into *out
 * (NULL for an absent/empty filter). 0, or -1 with err (400). */
int query__metadata(const char *value, json_t **out, struct api_error *err);

/* Adds the states of one ?state= value ("running" or "running,paused")
 * to *mask (STORAGE_STATE_BIT bits). 0, or -1 with err (400). */
int query__states(const char *value, uint32_t *mask, struct api_error *err);

/* ?limit=: an integer 1..100; absent -> 100. 0, or -1 with err (400). */
int query__limit(const char *value, int *out, struct api_error *err);

/* Decodes %XX and '+' in place-free fashion into out (size out_len).
 * -1 for a bad escape, an embedded NUL or too long. */
int query__url_decode(const char *in, size_t in_len, char *out, size_t out_len);

#endif
