/* config: the environment, the configuration file and secret files, in
 * that order of precedence (docs/configuration.md). The file is parsed
 * once (config__load); the environment is read at each call, so a test
 * that sets WARREN_<NAME> sees it at once. */
#include "warren/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_LINE_MAX	  4096
#define CONFIG_SECRET_MAX 65536

struct config_entry {
	char *name;
	char *value;
	struct config_entry *next;
};

/* Settings from the file, and secrets read through WARREN_<NAME>_FILE.
 * Replaced whole by config__load; old lists are never freed (strings
 * handed out live until exit). */
static struct config_entry *config_file_entries;
static struct config_entry *config_env_secrets;
static pthread_once_t config_once = PTHREAD_ONCE_INIT;
static bool config_loaded; /* by config__load: the lazy load is not needed */

/* One parse: where problems go and how many errors were seen. */
struct config_parse {
	const char *path;
	FILE *report;
	bool strict; /* unknown keys are errors (config check), else warnings */
	bool world_readable;
	int errors;
	struct config_entry *entries;
};

static void config__problem(struct config_parse *p, bool error, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void config__problem(struct config_parse *p, bool error, int line, const char *fmt, ...)
{
	va_list ap;

	p->errors += error;
	if (!p->report)
		return;
	fprintf(p->report, "%s:%d: %s: ", p->path, line, error ? "error" : "warning");
	va_start(ap, fmt);
	vfprintf(p->report, fmt, ap);
	va_end(ap);
	fputc('\n', p->report);
}

static char *config__trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

/* "pg_url" -> "WARREN_PG_URL" (+ suffix). */
static void config__env_name(const char *name, const char *suffix, char *out, size_t out_len)
{
	size_t i;

	snprintf(out, out_len, "WARREN_%s%s", name, suffix);
	for (i = 7; out[i]; i++)
		out[i] = (char)toupper((unsigned char)out[i]);
}

int config__parse_bool(const char *value, bool *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};

	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(value, yes[i]) || !strcasecmp(value, no[i])) {
			*out = !strcasecmp(value, yes[i]);
			return 0;
		}
	}
	return -EINVAL;
}

/* Reads a secret file into *out (malloc'd): the whole file less its
 * trailing newlines; a relative path is taken inside $CREDENTIALS_DIRECTORY
 * (systemd's LoadCredential=). 0, or -errno with why in err. */
static int config__read_secret(const char *path, char **out, bool *world_readable, char *err,
			       size_t err_len)
{
	const char *credentials = getenv("CREDENTIALS_DIRECTORY");
	char full[4096], *text = NULL;
	struct stat st;
	ssize_t got = 0;
	int fd = -1, ret = 0;

	if (path[0] != '/' && !(credentials && credentials[0] == '/')) {
		snprintf(err, err_len,
			 "secret file '%s' is relative and CREDENTIALS_DIRECTORY is unset", path);
		return -EINVAL;
	}
	snprintf(full, sizeof(full), "%s%s%s", path[0] == '/' ? "" : credentials,
		 path[0] == '/' ? "" : "/", path);
	fd = open(full, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		snprintf(err, err_len, "secret file %.300s: %s", full, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_SECRET_MAX) {
		ret = -EINVAL;
		snprintf(err, err_len, "secret file %.300s: not a regular file under 64 KiB", full);
		goto out;
	}
	*world_readable = st.st_mode & S_IROTH;
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		ret = -ENOMEM;
		snprintf(err, err_len, "out of memory");
		goto out;
	}
	for (ssize_t n = 1; n > 0 && got<st.st_size; got += n> 0 ? n : 0)
		n = read(fd, text + got, (size_t)(st.st_size - got));
	text[got] = '\0';
	while (got > 0 && (text[got - 1] == '\n' || text[got - 1] == '\r'))
		text[--got] = '\0';
	if (!got || strlen(text) != (size_t)got || strchr(text, '\n')) {
		ret = -EINVAL;
		snprintf(err, err_len, "secret file %.300s: empty, or more than one line", full);
		goto out;
	}
	*out = text;
	text = NULL;
out:
	free(text);
	if (fd >= 0)
		close(fd);
	return ret;
}

static struct config_entry *config__find(struct config_entry *list, const char *name)
{
	for (struct config_entry *e = list; e; e = e->next)
		if (!strcmp(e->name, name))
			return e;
	return NULL;
}

static void config__add(struct config_parse *p, int line, const char *name, char *value)
{
	struct config_entry *entry = calloc(1, sizeof(*entry));

	if (!entry || !(entry->name = strdup(name))) {
		free(entry);
		free(value);
		config__problem(p, true, line, "out of memory");
		return;
	}
	entry->value = value;
	entry->next = p->entries;
	p->entries = entry;
}

/* One "name = value" line of the file. value is the file's text, or for
 * "<secret>_file" the path of the file that holds it. */
static void config__parse_setting(struct config_parse *p, int line, const char *name,
				  const char *value)
{
	const struct config_setting *s = config__setting(name);
	char base[128], why[512];
	size_t len = strlen(name);
	char *stored = NULL;
	bool from_file = false, secret_world_readable = false;

	if (!s && len > 5 && len - 5 < sizeof(base) && !strcmp(name + len - 5, "_file")) {
		snprintf(base, sizeof(base), "%.*s", (int)(len - 5), name);
		s = config__setting(base);
		if (s && !(s->flags & CONFIG_SECRET)) {
			config__problem(p, true, line, "%s is not a secret: write %s = value", name,
					base);
			return;
		}
		from_file = s != NULL;
	}
	if (!s) {
		const char *near = config__suggest(name);

		config__problem(p, p->strict, line, "unknown setting '%s'%s%s%s", name,
				near ? " (did you mean '" : "", near ? near : "",
				near ? "'?)" : "");
		if (!p->strict && !config__find(p->entries, name))
			config__add(p, line, name, strdup(value)); /* read by name as before */
		return;
	}
	if (config__find(p->entries, s->name)) {
		config__problem(p, true, line, "%s is set twice%s", s->name,
				from_file || s->flags & CONFIG_SECRET ? " (value and _file?)" : "");
		return;
	}
	if (from_file) {
		if (config__read_secret(value, &stored, &secret_world_readable, why, sizeof(why))) {
			config__problem(p, true, line, "%s: %s", name, why);
			return;
		}
		if (secret_world_readable)
			config__problem(p, false, line, "%s: %s is readable by every user", name,
					value);
	} else {
		stored = strdup(value);
		if (s->flags & CONFIG_SECRET && p->world_readable)
			config__problem(
			    p, false, line,
			    "secret %s is inline in a file every user can read (use %s_file)",
			    s->name, s->name);
		if (s->type == CONFIG_PATH && value[0] && value[0] != '/')
			config__problem(p, false, line, "%s: relative path '%s'", s->name, value);
		if (value[0] == '"' || value[0] == '\'')
			config__problem(p, false, line, "%s: quotes are part of the value",
					s->name);
	}
	if (stored && config__validate(s, stored, why, sizeof(why))) {
		config__problem(p, true, line, "%s", why);
		free(stored);
		return;
	}
	config__add(p, line, s->name, stored);
}

/* Parses the file at p->path into p->entries. 0, or -errno when it cannot
 * be opened (nothing reported then). */
static int config__parse_file(struct config_parse *p)
{
	char line[CONFIG_LINE_MAX + 2];
	struct stat st;
	FILE *file = fopen(p->path, "re");
	int number = 0;

	if (!file)
		return -errno;
	if (fstat(fileno(file), &st) == 0)
		p->world_readable = st.st_mode & S_IROTH;
	while (fgets(line, sizeof(line), file)) {
		char *eq, *name, *text;
		size_t len = strlen(line);

		number++;
		if (len && line[len - 1] != '\n' && !feof(file)) {
			config__problem(p, true, number, "line longer than %d characters",
					CONFIG_LINE_MAX);
			while (fgets(line, sizeof(line), file) && !strchr(line, '\n'))
				;
			continue;
		}
		text = config__trim(line);
		if (!*text || *text == '#')
			continue;
		eq = strchr(text, '=');
		if (!eq) {
			config__problem(p, true, number, "expected 'name = value'");
			continue;
		}
		*eq = '\0';
		name = config__trim(text);
		if (!*name ||
		    strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name)) {
			config__problem(p, true, number, "bad setting name '%s' (a-z, 0-9, _)",
					name);
			continue;
		}
		config__parse_setting(p, number, name, config__trim(eq + 1));
	}
	fclose(file);
	return 0;
}

/* Checks every WARREN_<NAME> of the table and reads WARREN_<NAME>_FILE of
 * the secrets into *secrets. 0, or -EINVAL with the first problem in err. */
static int config__load_env(struct config_entry **secrets, char *err, size_t err_len)
{
	const struct config_setting *table;
	char env_name[160], why[512];
	size_t count;

	table = config__settings(&count);
	for (size_t i = 0; i < count; i++) {
		const char *value, *path;
		struct config_entry *entry;
		char *secret = NULL;
		bool world_readable;

		config__env_name(table[i].name, "", env_name, sizeof(env_name));
		value = getenv(env_name);
		if (value && *value && config__validate(&table[i], value, why, sizeof(why))) {
			snprintf(err, err_len, "%s: %s", env_name, why);
			return -EINVAL;
		}
		config__env_name(table[i].name, "_FILE", env_name, sizeof(env_name));
		path = table[i].flags & CONFIG_SECRET ? getenv(env_name) : NULL;
		if (!path || !*path)
			continue;
		if (config__read_secret(path, &secret, &world_readable, why, sizeof(why)) ||
		    config__validate(&table[i], secret, why, sizeof(why))) {
			free(secret);
			snprintf(err, err_len, "%s: %s", env_name, why);
			return -EINVAL;
		}
		entry = calloc(1, sizeof(*entry));
		if (!entry) {
			free(secret);
			snprintf(err, err_len, "out of memory");
			return -ENOMEM;
		}
		entry->name = (char *)table[i].name;
		entry->value = secret;
		entry->next = *secrets;
		*secrets = entry;
	}
	return 0;
}

/* names_owned: the file's entries own their names; the secrets' names are
 * the table's. */
static void config__free_entries(struct config_entry *list, bool names_owned)
{
	while (list) {
		struct config_entry *next = list->next;

		if (names_owned)
			free(list->name);
		free(list->value);
		free(list);
		list = next;
	}
}

/* Lists a reload replaced: a reader may still hold their strings, so they
 * stay, reachable from here, until exit. */
struct config_retired {
	struct config_entry *list;
	struct config_retired *next;
};
static struct config_retired *config_retired;
static pthread_mutex_t config_retired_lock = PTHREAD_MUTEX_INITIALIZER;

static void config__retire(struct config_entry *list)
{
	struct config_retired *node;

	if (!list)
		return;
	node = malloc(sizeof(*node));
	if (!node)
		return; /* kept anyway: never freed under a reader */
	node->list = list;
	pthread_mutex_lock(&config_retired_lock);
	node->next = config_retired;
	config_retired = node;
	pthread_mutex_unlock(&config_retired_lock);
}

int config__load(const char *path, char *err, size_t err_len)
{
	struct config_parse parse = {.strict = false};
	struct config_entry *secrets = NULL;
	char *problems = NULL;
	size_t problems_len = 0;
	bool explicit = true;
	int ret;

	if (!path) {
		path = getenv("WARREN_CONFIG");
		if (!path) {
			path = CONFIG_DEFAULT_PATH;
			explicit = false;
		}
	}
	ret = config__load_env(&secrets, err, err_len);
	if (ret) {
		config__free_entries(secrets, false);
		return ret;
	}
	if (*path) {
		parse.path = path;
		parse.report = open_memstream(&problems, &problems_len);
		ret = config__parse_file(&parse);
		if (parse.report)
			fclose(parse.report);
		if (ret == -ENOENT && !explicit) {
			ret = 0;
		} else if (ret) {
			snprintf(err, err_len, "%s: %s", path, strerror(-ret));
		} else if (parse.errors) {
			/* The first error line is the reason; warnings go to stderr. */
			char *first = problems ? strstr(problems, ": error: ") : NULL;

			while (first && first > problems && first[-1] != '\n')
				first--;
			snprintf(err, err_len, "%.*s", first ? (int)strcspn(first, "\n") : 0,
				 first ? first : "");
			ret = -EINVAL;
		} else if (problems && *problems) {
			fputs(problems, stderr);
		}
	}
	free(problems);
	if (ret) {
		config__free_entries(secrets, false);
		config__free_entries(parse.entries, true);
		return ret;
	}
	config__retire(__atomic_exchange_n(&config_env_secrets, secrets, __ATOMIC_ACQ_REL));
	config__retire(__atomic_exchange_n(&config_file_entries, parse.entries, __ATOMIC_ACQ_REL));
	__atomic_store_n(&config_loaded, true, __ATOMIC_RELEASE);
	return 0;
}

/* The lazy load's outcome: config__get ends the process on a failure,
 * config__get_soft does not. */
static int config_lazy_status;
static char config_lazy_error[1024];

static void config__load_once(void)
{
	if (__atomic_load_n(&config_loaded, __ATOMIC_ACQUIRE))
		return;
	config_lazy_status = config__load(NULL, config_lazy_error, sizeof(config_lazy_error));
}

/* Environment, secrets, file, fallback (the loaded lists as they are). */
static const char *config__lookup(const char *name, const char *fallback)
{
	char env_name[160];
	const char *env;
	struct config_entry *found;

	config__env_name(name, "", env_name, sizeof(env_name));
	env = getenv(env_name);
	if (env && *env)
		return env;
	found = config__find(__atomic_load_n(&config_env_secrets, __ATOMIC_ACQUIRE), name);
	if (!found)
		found = config__find(__atomic_load_n(&config_file_entries, __ATOMIC_ACQUIRE), name);
	return found ? found->value : fallback;
}

const char *config__get(const char *name, const char *fallback)
{
	pthread_once(&config_once, config__load_once);
	if (config_lazy_status && !__atomic_load_n(&config_loaded, __ATOMIC_ACQUIRE)) {
		fprintf(stderr, "warren: configuration: %s\n", config_lazy_error);
		exit(CONFIG_EXIT_STATUS);
	}
	return config__lookup(name, fallback);
}

const char *config__get_soft(const char *name, const char *fallback)
{
	pthread_once(&config_once, config__load_once);
	return config__lookup(name, fallback);
}

int64_t config__get_int(const char *name, int64_t fallback)
{
	const char *value = config__get(name, NULL);
	char *end;
	long long parsed;

	if (!value)
		return fallback;
	parsed = strtoll(value, &end, 10);
	return (*end == '\0' && end != value) ? parsed : fallback;
}

bool config__get_bool(const char *name, bool fallback)
{
	const char *value = config__get(name, NULL);
	bool parsed;

	if (!value)
		return fallback;
	return config__parse_bool(value, &parsed) ? false : parsed;
}

int config__check_file(const char *path, FILE *out)
{
	struct config_parse parse = {.path = path, .report = out, .strict = true};
	int ret = config__parse_file(&parse);

	for (struct config_entry *e = parse.entries, *next; e; e = next) {
		next = e->next;
		free(e->name);
		free(e->value);
		free(e);
	}
	return ret ? ret : parse.errors;
}
