/* `warren template build NAME [--force]`, `warren template list` and
 * `warren template prune [--older-than-days N] [--dry-run]`: builds
 * templates with guest/rootfs/build-template.sh, shows the installed
 * ones (guest/rootfs/README.md) and removes the build cache's layers and
 * pulled image trees nobody used lately (docs/templates.md). */
#include <dirent.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "cli.h"

#ifdef WARREN_HAVE_TEMPLATES
#include "warren/config.h"
#include "warren/templates.h"

static int usage(void)
{
	fprintf(stderr, "usage: warren template build NAME [--force]\n"
			"       warren template list\n"
			"       warren template prune [--older-than-days N] [--dry-run]\n"
			"NAME: minimal (busybox + agent, seconds) or base (Debian minbase +\n"
			"python3, curl: minutes, cached by content hash) or\n"
			"code-interpreter-v1 (base + Jupyter kernel, numpy, pandas, matplotlib\n"
			"and warren-interpreter; docs/code-interpreter.md)\n");
	return 2;
}

static int template_build(int argc, char **argv)
{
	const char *name = NULL;
	int force = 0;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0)
			force = 1;
		else if (!name)
			name = argv[i];
		else
			return usage();
	}
	if (!name || !templates__name_valid(name))
		return usage();
	if (strcmp(name, "minimal") != 0 && strcmp(name, "base") != 0 &&
	    strcmp(name, "code-interpreter-v1") != 0) {
		fprintf(
		    stderr,
		    "warren template: unknown template %s (minimal, base or code-interpreter-v1)\n",
		    name);
		return 2;
	}
	return templates__build(name, force) == 0 ? 0 : 1;
}

static int template_list(void)
{
	struct template_info *list;
	size_t count;
	int ret = templates__list(templates__dir(), &list, &count);

	if (ret) {
		fprintf(stderr, "warren template list: %s: %s\n", templates__dir(), strerror(-ret));
		return 1;
	}
	printf("%-12s %-14s %-16s %12s  %s\n", "NAME", "AGENT", "HASH", "SIZE", "BUILT AT");
	for (size_t i = 0; i < count; i++)
		printf("%-12s %-14s %-16.16s %12llu  %s\n", list[i].name, list[i].agent_version,
		       list[i].content_hash, (unsigned long long)list[i].size, list[i].built_at);
	free(list);
	return 0;
}

extern char **environ;

/* rm -rf --one-file-system path; 0 when it exited 0. */
static int remove_tree(const char *path)
{
	const char *argv[] = {"rm", "-rf", "--one-file-system", "--", path, NULL};
	int status;
	pid_t pid;

	if (posix_spawnp(&pid, "rm", NULL, NULL, (char *const *)argv, environ))
		return -1;
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Removes the entries of <cache>/<sub> last used (mtime: a build that
 * reuses one touches it) before cutoff. A leftover of an interrupted
 * build (a dot name) goes only when older than a day as well, so a
 * build in progress keeps its work. Counts into *removed. */
static int prune_dir(const char *sub, time_t cutoff, bool dry_run, unsigned *removed)
{
	char dir[4096], path[4096 + 256];
	time_t day_ago = time(NULL) - 86400;
	struct dirent *entry;
	int ret = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s", templates__cache_dir(), sub);
	if (!(d = opendir(dir)))
		return 0;
	while ((entry = readdir(d))) {
		struct stat st;

		if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
		if (lstat(path, &st) || !S_ISDIR(st.st_mode) || st.st_mtime >= cutoff ||
		    (entry->d_name[0] == '.' && st.st_mtime >= day_ago))
			continue;
		printf("%s %s\n", dry_run ? "would remove" : "removing", path);
		if (!dry_run && remove_tree(path)) {
			fprintf(stderr, "warren template prune: %s could not be removed\n", path);
			ret = 1;
			continue;
		}
		(*removed)++;
	}
	closedir(d);
	return ret;
}

/* The layer cache and the pulled OCI trees are only a cache: installed
 * templates are hard-link copies, so removing an entry never changes a
 * template or a running sandbox (a later build misses the cache). */
static int template_prune(int argc, char **argv)
{
	long days = 7;
	bool dry_run = false;
	unsigned removed = 0;
	int ret;

	for (int i = 0; i < argc; i++) {
		char *end;

		if (!strcmp(argv[i], "--dry-run")) {
			dry_run = true;
		} else if (!strcmp(argv[i], "--older-than-days") && i + 1 < argc) {
			days = strtol(argv[++i], &end, 10);
			if (*end || days < 0 || days > 36500)
				return usage();
		} else {
			return usage();
		}
	}
	time_t cutoff = time(NULL) - (time_t)days * 86400;
	ret = prune_dir("layers", cutoff, dry_run, &removed) |
	      prune_dir("oci", cutoff, dry_run, &removed);
	printf("%u entr%s %s (%s, unused for %ld day%s)\n", removed, removed == 1 ? "y" : "ies",
	       dry_run ? "to remove" : "removed", templates__cache_dir(), days,
	       days == 1 ? "" : "s");
	return ret;
}

static int cli_template__run(int argc, char **argv)
{
	/* lib/templates takes its settings from us (docs/configuration.md). */
	templates__configure(&(struct templates_settings){
	    .dir = config__get("templates_dir", NULL),
	    .cache_dir = config__get("template_cache_dir", NULL),
	    .agent_binary = config__get("agent_binary", NULL),
	    .builder = config__get("template_builder", NULL),
	});
	if (argc >= 2 && strcmp(argv[1], "prune") == 0)
		return template_prune(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "build") == 0)
		return template_build(argc - 2, argv + 2);
	if (argc == 2 && strcmp(argv[1], "list") == 0)
		return template_list();
	return usage();
}
#else
static int cli_template__run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "warren template: built without libwarren-templates\n");
	return 1;
}
#endif

CLI_COMMAND(template, "template", "build or list templates (root filesystems)", cli_template__run)
