/* storage_settings: how a binary reaches PostgreSQL, read once from the
 * configuration and handed to storage/ (which never reads the config).
 * It lives in lib/ because lib/ is the one room that reads settings;
 * storage/ only receives the struct. Strings point into the config (they
 * live until exit) or are the caller's. */
#ifndef WARREN_STORAGE_SETTINGS_H
#define WARREN_STORAGE_SETTINGS_H

#include <stdint.h>

struct storage_settings {
	const char *url;	   /* libpq URI or conninfo, best without a password */
	const char *password;	   /* NULL: the url's, or libpq's own (.pgpass) */
	const char *ssl_mode;	   /* NULL: the url's, else libpq's (PGSSLMODE, "prefer") */
	const char *ssl_root_cert; /* CA file that signs the server's certificate; NULL: libpq's */
	int pool_size;		   /* pooled connections */
	int64_t checkout_timeout_ms; /* wait for a free pooled connection */
};

/* Fills s from settings pg_url (default_url when unset; may be NULL),
 * pg_password (pg_password_file), pg_ssl_mode, pg_ssl_root_cert,
 * pg_pool_size (default_pool_size when unset) and pg_checkout_timeout_ms
 * (10000). A broken configuration exits (config__get). */
void storage_settings__from_config(struct storage_settings *s, const char *default_url,
				   int default_pool_size);

/* Defaults for a bare url (tests, tools): no password, TLS or CA beyond
 * what the url says; pool_size connections; 10 s checkout wait. */
void storage_settings__for_url(struct storage_settings *s, const char *url, int pool_size);

#endif
