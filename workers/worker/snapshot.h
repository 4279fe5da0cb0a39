/* snapshot: a sandbox as a new installed template (docs/api.md,
 * "Snapshots"). jail: its files only (processes and memory are not
 * captured; a sandbox started from it boots fresh over the captured
 * tree). vm: its guest (memory, vCPUs, devices) and disk, exported by the
 * runtime; a sandbox started from it restores the guest and goes on from
 * where the source was. */
#ifndef WARREN_WORKER_SNAPSHOT_H
#define WARREN_WORKER_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "warren/templates.h"

struct snapshot_source {
	struct template_info base; /* the sandbox's template (templates__read) */
	const char *upper;	   /* jail: its writable layer (jail__upper_dir) */
	unsigned host_uid;	   /* jail: host uid of its root (jail__host_uid) */
	const char *templates_dir; /* where the snapshot is installed */
	const char *cache_dir;	   /* where its tree lives */
	/* vm: fills the template's dir with the guest's files and sets
	 * *bytes (runtime__export_vm); 0 or -errno with err. NULL for jail. */
	int (*export_vm)(void *opaque, const char *dir, uint64_t *bytes, char *err, size_t err_len);
	void *export_opaque;
	const char *source_id; /* vm: the sandbox, whose agent the restored guest runs */
	bool source_secure;    /* vm: whether that agent holds an access token */
};

/* A vm snapshot template's source (template.json "vm_snapshot"): true with
 * the source sandbox's id and whether its agent holds an access token
 * (a sandbox restored from it takes its own over at /init). */
bool snapshot__vm_source(const char *template_id, char *source_id, size_t source_id_len,
			 bool *secure);

/* Installs templates_dir/<name> -> cache_dir/<name>: jail, a hard-link
 * copy of the base rootfs with a copy of upper merged in (owners shifted
 * back, whiteouts applied; upper itself is only read); vm, what export_vm
 * wrote; and the base's template.json renamed. *bytes: the snapshot's own storage (its layer).
 * 0, or -1 with err filled (-1 also when templates_dir/<name> exists); a
 * tree of an interrupted earlier attempt is replaced; nothing is left
 * behind on failure. Freeze the sandbox around it for a consistent
 * copy. */
int snapshot__capture(const struct snapshot_source *source, const char *name, uint64_t *bytes,
		      char *err, size_t err_len);

/* Bytes of the regular files and symlinks under dir, not following links
 * (a writable layer: what its snapshot would hold); 0 when unreadable. */
uint64_t snapshot__layer_bytes(const char *dir);

/* Removes what captures cut short left (a worker killed while it copied):
 * cache_dir/.snapshot-* work trees and templates_dir/.*.snapshot links.
 * Only while no capture runs (the worker's start). Returns how many. */
int snapshot__sweep_unfinished(const char *templates_dir, const char *cache_dir);

/* Removes templates_dir/<name> and the tree it points to. 0, -ENOENT,
 * -EINVAL (bad name) or -EIO. */
int snapshot__remove(const char *templates_dir, const char *name);

#endif
