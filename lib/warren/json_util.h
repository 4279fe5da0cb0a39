/* json_util: small typed accessors over jansson, shared by every room
 * that reads JSON. They never abort on a wrong type: they report it. */
#ifndef WARREN_JSON_UTIL_H
#define WARREN_JSON_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* The string member key, or fallback when absent or not a string. */
const char *json_util__string(const json_t *object, const char *key, const char *fallback);
/* The integer member key, or fallback when absent or not an integer. */
int64_t json_util__int(const json_t *object, const char *key, int64_t fallback);
/* The boolean member key, or fallback when absent or not a boolean. */
bool json_util__bool(const json_t *object, const char *key, bool fallback);
/* Serializes compactly; the caller frees the result. NULL on failure. */
char *json_util__dump(const json_t *value);

#endif
