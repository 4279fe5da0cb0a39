/* events: cache invalidation from results (ARCHITECTURE.md, "Results").
 * A thread consumes <kafka_topic_prefix>warren.sandbox.events in a
 * consumer group of its own (every proxy instance sees every event),
 * starting at the latest offset and committing nothing, and forgets the
 * cached row of each event's sandbox (lookup__invalidate), so a killed,
 * paused or resumed sandbox is re-read at its next request instead of at
 * the end of the TTL. The TTL stays the bound when Kafka is away. */
#ifndef WARREN_PROXY_EVENTS_H
#define WARREN_PROXY_EVENTS_H

#include "lookup.h"

struct proxy_events;

/* Starts the consumer thread (Kafka: the kafka_* settings, read here
 * once). NULL with a
 * message in err when the consumer cannot be created. */
struct proxy_events *proxy_events__start(struct lookup *lookup, char *err, size_t err_len);
/* Stops the thread, leaves and deletes the group. NULL is ok. */
void proxy_events__stop(struct proxy_events *events);

#endif
