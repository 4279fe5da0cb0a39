/* storage_settings: the PostgreSQL client settings of a binary, read once
 * (warren/storage_settings.h). */
#include "warren/storage_settings.h"

#include <string.h>

#include "warren/config.h"

#define STORAGE_CHECKOUT_TIMEOUT_MS 10000

void storage_settings__for_url(struct storage_settings *s, const char *url, int pool_size)
{
	memset(s, 0, sizeof(*s));
	s->url = url;
	s->pool_size = pool_size;
	s->checkout_timeout_ms = STORAGE_CHECKOUT_TIMEOUT_MS;
}

void storage_settings__from_config(struct storage_settings *s, const char *default_url,
				   int default_pool_size)
{
	storage_settings__for_url(s, config__get("pg_url", default_url),
				  (int)config__get_int("pg_pool_size", default_pool_size));
	s->password = config__get("pg_password", NULL);
	s->ssl_mode = config__get("pg_ssl_mode", NULL);
	s->ssl_root_cert = config__get("pg_ssl_root_cert", NULL);
	s->checkout_timeout_ms =
	    config__get_int("pg_checkout_timeout_ms", STORAGE_CHECKOUT_TIMEOUT_MS);
}
