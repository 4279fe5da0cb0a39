/* placement: what the hosts table says about where a create may go (pure:
 * a hosts list in, a survey out; no SQL, no Kafka). */
#ifndef WARREN_API_PLACEMENT_H
#define WARREN_API_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "warren/storage.h"

struct placement {
	size_t ready;		     /* fresh ready hosts of the runtime that understand it */
	size_t incompatible;	     /* fresh ready hosts of the runtime that do not */
	int64_t capacity;	     /* summed over the compatible ready hosts */
	int64_t running;	     /* same */
	int32_t newest_incompatible; /* highest protocol_version among the incompatible */
	char best_host[65];	     /* the compatible ready host with most room ("": none) */
};

/* Surveys hosts for a create written in event version `version` for
 * `runtime` ("" any): a host counts when its state is ready, its runtime
 * matches and its heartbeat is at most fresh_ms old; it is compatible when
 * its protocol_version is at least version (a worker understands every
 * version from 1 up to its own). */
void placement__survey(const struct storage_host *hosts, size_t count, const char *runtime,
		       int32_t version, int64_t now_ms, int64_t fresh_ms, struct placement *out);

#endif
