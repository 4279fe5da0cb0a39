/* contexts: the context table (contexts.h). */
#include "contexts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "requests.h"
#include "warren/ids.h"
#include "warren/log.h"

static struct {
	pthread_mutex_t lock;
	struct contexts_config config;
	struct context *table[CONTEXTS_MAX];
	struct context *default_context;
} registry = {.lock = PTHREAD_MUTEX_INITIALIZER};

void contexts__init(const struct contexts_config *config)
{
	registry.config = *config;
}

static int start_kernel(struct context *c, char *err, size_t err_len)
{
	struct kernel_options options = registry.config.kernel;

	options.cwd = c->cwd;
	return kernel__start(&c->kernel, registry.config.zctx, &options, err, err_len);
}

struct context *contexts__create(const char *language, const char *cwd, bool is_default,
				 int *status, char *err, size_t err_len)
{
	struct context *c;
	struct stat st;
	int slot = -1;

	if (!requests__language_supported(language)) {
		*status = 400;
		snprintf(err, err_len, "language '%.32s' is not supported here (python only)",
			 language);
		return NULL;
	}
	if (!cwd)
		cwd = registry.config.kernel.cwd;
	if (cwd[0] != '/' || strlen(cwd) >= sizeof(c->cwd) || stat(cwd, &st) ||
	    !S_ISDIR(st.st_mode)) {
		*status = 400;
		snprintf(err, err_len, "cwd must be an existing absolute directory");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c || ids__uuid(c->id)) {
		free(c);
		*status = 500;
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	snprintf(c->language, sizeof(c->language), "python");
	snprintf(c->cwd, sizeof(c->cwd), "%s", cwd);
	kernel__init(&c->kernel);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->turn, NULL);
	c->busy = true;
	c->refs = 2; /* the table's and the caller's */
	pthread_mutex_lock(&registry.lock);
	for (int i = 0; i < CONTEXTS_MAX && slot < 0; i++)
		if (!registry.table[i])
			slot = i;
	if (slot >= 0) {
		registry.table[slot] = c;
		if (is_default)
			registry.default_context = c;
	}
	pthread_mutex_unlock(&registry.lock);
	if (slot < 0) {
		free(c);
		*status = 429;
		snprintf(err, err_len, "at most %d contexts", CONTEXTS_MAX);
		return NULL;
	}
	if (is_default)
		return c; /* registered and busy: the caller starts its kernel */
	if (start_kernel(c, err, err_len)) {
		log_error("context %s: %s", c->id, err);
		contexts__release(c);
		contexts__remove(c);
		contexts__put(c);
		*status = 500;
		return NULL;
	}
	return c;
}

struct context *contexts__get(const char *id)
{
	struct context *found = NULL;

	pthread_mutex_lock(&registry.lock);
	if (!id) {
		found = registry.default_context;
	} else {
		for (int i = 0; i < CONTEXTS_MAX && !found; i++)
			if (registry.table[i] && !strcmp(registry.table[i]->id, id))
				found = registry.table[i];
	}
	if (found)
		found->refs++;
	pthread_mutex_unlock(&registry.lock);
	return found;
}

void contexts__put(struct context *c)
{
	bool free_it;

	pthread_mutex_lock(&registry.lock);
	free_it = --c->refs == 0;
	pthread_mutex_unlock(&registry.lock);
	if (free_it) {
		kernel__stop(&c->kernel);
		pthread_mutex_destroy(&c->kernel.control_lock);
		pthread_cond_destroy(&c->turn);
		pthread_mutex_destroy(&c->lock);
		free(c);
	}
}

int contexts__restart_acquired(struct context *c, char *err, size_t err_len)
{
	log_info("%s the kernel of context %s", c->kernel.pid > 0 ? "restarting" : "starting",
		 c->id);
	kernel__stop(&c->kernel);
	return start_kernel(c, err, err_len);
}

int contexts__acquire(struct context *c, char *err, size_t err_len)
{
	pthread_mutex_lock(&c->lock);
	while (c->busy)
		pthread_cond_wait(&c->turn, &c->lock);
	if (c->removed) {
		pthread_mutex_unlock(&c->lock);
		snprintf(err, err_len, "context %s was removed", c->id);
		return -1;
	}
	c->busy = true;
	pthread_mutex_unlock(&c->lock);
	if (!kernel__alive(&c->kernel) && contexts__restart_acquired(c, err, err_len)) {
		contexts__release(c);
		return -1;
	}
	return 0;
}

void contexts__release(struct context *c)
{
	pthread_mutex_lock(&c->lock);
	c->busy = false;
	pthread_cond_broadcast(&c->turn);
	pthread_mutex_unlock(&c->lock);
}

void contexts__remove(struct context *c)
{
	bool was_listed = false;

	pthread_mutex_lock(&registry.lock);
	for (int i = 0; i < CONTEXTS_MAX; i++) {
		if (registry.table[i] == c) {
			registry.table[i] = NULL;
			was_listed = true;
		}
	}
	if (registry.default_context == c)
		registry.default_context = NULL;
	pthread_mutex_unlock(&registry.lock);
	pthread_mutex_lock(&c->lock);
	while (c->busy)
		pthread_cond_wait(&c->turn, &c->lock);
	c->removed = true;
	pthread_cond_broadcast(&c->turn);
	pthread_mutex_unlock(&c->lock);
	kernel__stop(&c->kernel);
	if (was_listed)
		contexts__put(c); /* the table's reference */
}

json_t *contexts__describe(const struct context *c)
{
	return json_pack("{s:s, s:s, s:s}", "id", c->id, "language", c->language, "cwd", c->cwd);
}

json_t *contexts__list(void)
{
	json_t *list = json_array();

	pthread_mutex_lock(&registry.lock);
	for (int i = 0; i < CONTEXTS_MAX; i++)
		if (registry.table[i])
			json_array_append_new(list, contexts__describe(registry.table[i]));
	pthread_mutex_unlock(&registry.lock);
	return list;
}

void contexts__shutdown(void)
{
	pthread_mutex_lock(&registry.lock);
	for (int i = 0; i < CONTEXTS_MAX; i++)
		if (registry.table[i])
			kernel__stop(&registry.table[i]->kernel);
	pthread_mutex_unlock(&registry.lock);
}
