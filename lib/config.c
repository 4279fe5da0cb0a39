#include "warren/config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct config_entry {
	char *name;
	char *value;
	struct config_entry *next;
};

static struct config_entry *config_entries;
static pthread_once_t config_once = PTHREAD_ONCE_INIT;

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

static void config__load_file(void)
{
	const char *path = getenv("WARREN_CONFIG");
	char line[4096];
	FILE *file;

	if (!path || !*path)
		return;
	file = fopen(path, "re");
	if (!file)
		return;
	while (fgets(line, sizeof(line), file)) {
		char *eq, *name, *value;
		struct config_entry *entry;

		if (line[0] == '#' || !(eq = strchr(line, '=')))
			continue;
		*eq = '\0';
		name = config__trim(line);
		value = config__trim(eq + 1);
		entry = calloc(1, sizeof(*entry));
		if (!entry)
			break;
		entry->name = strdup(name);
		entry->value = strdup(value);
		entry->next = config_entries;
		config_entries = entry;
	}
	fclose(file);
}

const char *config__get(const char *name, const char *fallback)
{
	char env_name[128];
	size_t i;
	const char *env;

	snprintf(env_name, sizeof(env_name), "WARREN_%s", name);
	for (i = 7; env_name[i]; i++)
		env_name[i] = (char)toupper((unsigned char)env_name[i]);
	env = getenv(env_name);
	if (env && *env)
		return env;
	pthread_once(&config_once, config__load_file);
	for (struct config_entry *e = config_entries; e; e = e->next)
		if (!strcmp(e->name, name))
			return e->value;
	return fallback;
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

	if (!value)
		return fallback;
	return !strcasecmp(value, "1") || !strcasecmp(value, "true") || !strcasecmp(value, "yes") ||
	       !strcasecmp(value, "on");
}
