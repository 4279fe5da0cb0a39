/* snapshot: a jail sandbox's files as a new installed template
 * (docs/templates.md, "Snapshots"). Files only: for jail, processes and
 * memory are not captured; a sandbox started from a snapshot boots fresh
 * over the captured tree. */
#ifndef WARREN_WORKER_SNAPSHOT_H
#define WARREN_WORKER_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "warren/templates.h"

struct snapshot_source {
	struct template_info base; /* the sandbox's template (templates__read) */
	const char *upper;	   /* its writable layer (jail__upper_dir) */
	unsigned host_uid;	   /* host uid of its root (jail__host_uid) */
	const char *templates_dir; /* where the snapshot is installed */
	const char *cache_dir;	   /* where its tree lives */
};

/* Installs templates_dir/<name> -> cache_dir/<name>: a hard-link copy of
 * the base rootfs with a copy of upper merged in (owners shifted back,
 * whiteouts applied; upper itself is only read), and the base's
 * template.json renamed. *bytes: the snapshot's own storage (its layer).
 * 0, or -1 with err filled (-1 also when templates_dir/<name> exists); a
 * tree of an interrupted earlier attempt is replaced; nothing is left
 * behind on failure. Freeze the sandbox around it for a consistent
 * copy. */
int snapshot__capture(const struct snapshot_source *source, const char *name, uint64_t *bytes,
		      char *err, size_t err_len);

/* Bytes of the regular files and symlinks under dir, not following links
 * (a writable layer: what its snapshot would hold); 0 when unreadable. */
uint64_t snapshot__layer_bytes(const char *dir);

/* Removes templates_dir/<name> and the tree it points to. 0, -ENOENT,
 * -EINVAL (bad name) or -EIO. */
int snapshot__remove(const char *templates_dir, const char *name);

#endif
