/* placement: the hosts survey behind a create's placement (placement.h). */
#include "placement.h"

#include <stdio.h>
#include <string.h>

void placement__survey(const struct storage_host *hosts, size_t count, const char *runtime,
		       int32_t version, int64_t now_ms, int64_t fresh_ms, struct placement *out)
{
	int64_t best_room = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < count; i++) {
		const struct storage_host *host = &hosts[i];
		int64_t room = (int64_t)host->capacity - host->running;

		if ((runtime && *runtime && strcmp(host->runtime, runtime)) ||
		    strcmp(host->state, "ready") || now_ms - host->heartbeat_at > fresh_ms)
			continue;
		if (host->protocol_version < version) {
			out->incompatible++;
			if (host->protocol_version > out->newest_incompatible)
				out->newest_incompatible = host->protocol_version;
			continue;
		}
		out->ready++;
		out->capacity += host->capacity;
		out->running += host->running;
		if (room > best_room) {
			best_room = room;
			snprintf(out->best_host, sizeof(out->best_host), "%s", host->id);
		}
	}
}
