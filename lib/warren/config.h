/* config: settings by name. A name "pg_url" is looked up as the
 * environment variable WARREN_PG_URL first, then as "pg_url = value" in
 * the file named by WARREN_CONFIG (if any), then the default. */
#ifndef WARREN_CONFIG_H
#define WARREN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

/* The returned string lives until exit; never NULL unless fallback is NULL. */
const char *config__get(const char *name, const char *fallback);
int64_t config__get_int(const char *name, int64_t fallback);
bool config__get_bool(const char *name, bool fallback);

#endif
