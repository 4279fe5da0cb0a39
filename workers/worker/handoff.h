/* handoff: creates that reach a full worker go to a host with room.
 * A worker owns partitions of the shared create topics whatever its load;
 * at capacity it passes each create it takes to the host topic of the
 * ready host (same runtime, fresh heartbeat) with the most room, instead
 * of holding the partition until a sandbox of its own ends
 * (workers/README.md, "Capacity"). Creates arriving on a host topic are
 * never passed on again. */
#ifndef WARREN_WORKER_HANDOFF_H
#define WARREN_WORKER_HANDOFF_H

#include <stdbool.h>

#include "warren/kafka_event.h"

struct worker;

/* True when this host is full (live sandboxes plus creates running here
 * reach its capacity) and another host has room: the create is to be
 * forwarded. Several create threads may ask at once, so a host can go
 * over capacity by at most its number of create threads. */
bool handoff__should_forward(struct worker *worker);
/* Count a create that runs here, from its start to its end. */
void handoff__started(struct worker *worker);
void handoff__finished(struct worker *worker);
/* Produces command to the host topic of the host with the most room.
 * 0 once the broker has it (the caller's offset may be committed),
 * -EAGAIN when no host has room any more or Kafka did not take it. */
int handoff__forward(struct worker *worker, const struct kafka_event *command);
/* The host a create belongs on because of its data, when that is not this
 * one: the host holding a volume it mounts (docs/volumes.md), or, when its
 * template is not installed here, the host that built it
 * (docs/templates.md). True with the host id in out when that host is
 * ready; false to run the create here (where it fails with its reason
 * when the data is missing). */
bool handoff__home_host(struct worker *worker, const struct kafka_event *command, char *out,
			size_t out_len);
/* Produces command to host's topic. 0 once the broker has it, else -EAGAIN. */
int handoff__forward_to(struct worker *worker, const struct kafka_event *command, const char *host);
/* For the create consumer's back-pressure: at capacity, keep taking
 * creates only while another host has room (checked at most once a
 * second against the hosts table). */
bool handoff__room_elsewhere(struct worker *worker);

#endif
