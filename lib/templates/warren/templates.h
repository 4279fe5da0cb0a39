/* templates: the installed templates of this host (root filesystems built
 * by guest/rootfs/build-template.sh) and their metadata (template.json).
 * guest/rootfs/README.md, lib/README.md. No SQL here: the storage
 * room registers templates from what this API returns. */
#ifndef WARREN_TEMPLATES_H
#define WARREN_TEMPLATES_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TEMPLATES_NAME_MAX	63
#define TEMPLATES_CPU_MAX	64
#define TEMPLATES_MEMORY_MIN_MB 64
#define TEMPLATES_MEMORY_MAX_MB (1024 * 1024)

struct template_info {
	char name[TEMPLATES_NAME_MAX + 1];
	char agent_version[64];
	char content_hash[65]; /* lower-case hex sha256 of the build inputs */
	char built_at[32];     /* RFC 3339 UTC */
	uint64_t size;	       /* bytes of the rootfs tree */
	uint64_t image_size;   /* bytes of rootfs.ext4 */
	/* The resources a sandbox of this template gets (optional
	 * "cpu_count" 1..TEMPLATES_CPU_MAX, "memory_mb" TEMPLATES_MEMORY_MIN_MB..
	 * TEMPLATES_MEMORY_MAX_MB); 0: the worker's defaults. */
	uint32_t cpu_count;
	uint32_t memory_mb;
	char dir[PATH_MAX];    /* the cache entry (symlink resolved) */
	char rootfs[PATH_MAX]; /* dir + "/rootfs": the jail's overlay lower */
	char image[PATH_MAX];  /* dir + "/rootfs.ext4": the VM's root disk */
};

/* Where templates live and how they are built, read once by the binary
 * from its settings (templates_dir, template_cache_dir, agent_binary,
 * template_builder: docs/configuration.md) and handed over with
 * templates__configure. NULL keeps the default given beside it; this
 * library never reads the configuration itself. */
struct templates_settings {
	const char *dir;	  /* /var/lib/warren/templates */
	const char *cache_dir;	  /* ${XDG_CACHE_HOME:-$HOME/.cache}/warren/templates */
	const char *agent_binary; /* NULL: warren-agent next to the running binary,
				     then the install's libexec/warren */
	const char *builder;	  /* NULL: the install's build-template.sh, else the
				     source tree's */
};

/* Makes settings this process's (the strings are not copied: they must
 * live until exit). Call once at start, before the getters below. */
void templates__configure(const struct templates_settings *settings);

/* The installed templates' folder. Lives until exit. */
const char *templates__dir(void);
/* The folder of template builds and layers. Lives until exit. */
const char *templates__cache_dir(void);
/* True when name is a template name: 1..63 of [a-z0-9_-], not starting
 * with '-' or '.'. */
bool templates__name_valid(const char *name);
/* Parses template.json text (len bytes, need not be NUL-terminated) into
 * out's metadata fields (not the paths). 0, or -EINVAL with a reason in
 * err on anything malformed: wrong types, missing fields, bad hash. */
int templates__parse_metadata(const char *text, size_t len, struct template_info *out, char *err,
			      size_t err_len);
/* Reads templates_dir/<name>/template.json and fills out, paths included.
 * 0, -ENOENT when the template is not installed, -EINVAL when malformed. */
int templates__read(const char *templates_dir, const char *name, struct template_info *out,
		    char *err, size_t err_len);
/* Every readable installed template, sorted by name; *out is malloc'ed
 * (free it). Malformed entries are skipped with a warning. 0 or -errno. */
int templates__list(const char *templates_dir, struct template_info **out, size_t *count);
/* Runs the builder for name ("minimal" or "base") with the configured
 * cache and templates dirs and agent binary. Waits for it; 0 when it
 * succeeded (a cached no-op included), else -1. */
int templates__build(const char *name, bool force);
/* The agent binary the builder will use, or NULL when none is found. */
const char *templates__agent_binary(void);

#endif
