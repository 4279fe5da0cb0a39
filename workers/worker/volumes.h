/* volumes: the worker's side of persistent volumes (docs/volumes.md). The
 * images live in the setting volumes_dir (/var/lib/warren/volumes) of the
 * host that first mounted them, one <volume id>.img each; the API claimed
 * them for a sandbox in PostgreSQL before the create reached us. */
#ifndef WARREN_WORKER_VOLUMES_H
#define WARREN_WORKER_VOLUMES_H

#include <limits.h>
#include <stddef.h>

#include "runtime.h"
#include "worker.h"

#define WORKER_VOLUMES_MAX 8

struct worker_volumes {
	size_t count;
	struct runtime_volume mounts[WORKER_VOLUMES_MAX]; /* point into the arrays below */
	char image[WORKER_VOLUMES_MAX][PATH_MAX];
	char path[WORKER_VOLUMES_MAX][1025];
};

/* The volumes the API claimed for sandbox_id, their images made when new
 * (and this host recorded as theirs). 0; -EAGAIN when PostgreSQL is away;
 * -errno with the reason otherwise. */
int worker_volumes__prepare(struct worker *worker, const char *sandbox_id,
			    struct worker_volumes *out, char *reason, size_t reason_len);
/* Deletes the images of volumes that have no row any more (deleted
 * through the API), and half-made images older than 10 minutes (a crash's
 * leftovers). Returns how many it removed. */
int worker_volumes__sweep(struct worker *worker);

#endif
