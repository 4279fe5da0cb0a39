/* config: settings by name. A name "pg_url" is looked up as the
 * environment variable WARREN_PG_URL first, then as "pg_url = value" in
 * the configuration file, then the caller's default. The file is the one
 * WARREN_CONFIG names (set but empty: no file), else /etc/warren/warren.conf
 * when it exists. Secret settings also take "<name>_file = PATH" (env
 * WARREN_<NAME>_FILE): the value is read from that file. Every setting is
 * listed once in config_settings.c (name, type, default, unit, doc);
 * docs/configuration.md is generated from that table. */
#ifndef WARREN_CONFIG_H
#define WARREN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_DEFAULT_PATH "/etc/warren/warren.conf"
/* Exit status of a binary whose configuration is broken (sysexits' EX_CONFIG). */
#define CONFIG_EXIT_STATUS 78

/* The returned string lives until exit; never NULL unless fallback is NULL.
 * The first call loads the file; a broken file (explicit file missing,
 * syntax error, bad value of a typed setting, unreadable secret file)
 * prints why and exits with CONFIG_EXIT_STATUS: a misconfigured service
 * must not start. */
const char *config__get(const char *name, const char *fallback);
int64_t config__get_int(const char *name, int64_t fallback);
bool config__get_bool(const char *name, bool fallback);
/* config__get for the logger, which every binary links (warren-vmm and
 * warren-jail-init too, inside jails where the file is out of reach): a
 * broken or unreadable configuration is not fatal here; the environment
 * and the defaults still apply. */
const char *config__get_soft(const char *name, const char *fallback);

enum config_type {
	CONFIG_STRING,
	CONFIG_PATH,	  /* an absolute path */
	CONFIG_INT,	  /* decimal, within [min, max] */
	CONFIG_BOOL,	  /* 1/0, true/false, yes/no, on/off */
	CONFIG_HOST_PORT, /* HOST:PORT (address__parse_host_port) */
	CONFIG_IPV4,	  /* dotted IPv4 address */
	CONFIG_CIDR,	  /* one address block */
	CONFIG_CIDR_LIST, /* blocks separated by commas and/or blanks; may be empty */
	CONFIG_URL,	  /* scheme://... */
};

#define CONFIG_SECRET 1u /* may be given as <name>_file; never logged */

struct config_setting {
	const char *name;
	enum config_type type;
	int64_t min, max;	  /* CONFIG_INT: the range; strings: length (max 0: any) */
	const char *choices;	  /* "a|b|c": the only values allowed, or NULL */
	const char *default_text; /* as documented: "" empty, NULL unset */
	const char *unit;	  /* "ms", "s", "MiB", "bytes", ... or "" */
	const char *readers;	  /* binaries that read it: "api, proxy" */
	unsigned flags;		  /* CONFIG_SECRET */
	const char *doc;	  /* one line */
};

/* The table of every setting, sorted by name; *count gets its length. */
const struct config_setting *config__settings(size_t *count);
/* The setting called name, or NULL when there is none. */
const struct config_setting *config__setting(const char *name);
/* The known setting closest to name (edit distance <= 3), or NULL. */
const char *config__suggest(const char *name);
/* 0 when value is valid for setting s, else -EINVAL with why in err. */
int config__validate(const struct config_setting *s, const char *value, char *err, size_t err_len);

/* 1/0, true/false, yes/no, on/off (any case): 0 and *out, else -EINVAL. */
int config__parse_bool(const char *value, bool *out);

/* (Re)loads settings from path (NULL: WARREN_CONFIG, else the default
 * file when present). 0, or -errno with why in err. Strings returned
 * before stay valid (old values are kept until exit). For start-up and
 * tests; config__get loads lazily on its own. */
int config__load(const char *path, char *err, size_t err_len);

/* Checks the file at path: syntax, unknown keys (with the nearest known
 * name), bad values, unreadable secret files, duplicates. Problems go to
 * out, one a line ("path:line: ..."). Returns the number of errors (0: the
 * file is good; warnings do not count), or -errno when path cannot be
 * read. */
int config__check_file(const char *path, FILE *out);

/* Writes the settings table as the Markdown section of
 * docs/configuration.md. */
void config__write_markdown(FILE *out);

#endif
