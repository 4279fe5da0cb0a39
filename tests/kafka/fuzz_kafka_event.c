/* libFuzzer target: kafka_event__decode on hostile bytes must never crash,
 * and whatever it accepts must encode again and decode to the same event. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "warren/kafka_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char reason[KAFKA_EVENT_REASON_MAX], again_reason[KAFKA_EVENT_REASON_MAX];
	struct kafka_event ev, again;
	enum kafka_event_error error;
	char *text;

	if (kafka_event__decode(data, size, &ev, reason, sizeof(reason)) != KAFKA_EVENT_OK) {
		if (reason[0] == '\0')
			abort(); /* every refusal says why */
		return 0;
	}
	text = kafka_event__encode(&ev, &error, reason, sizeof(reason));
	if (!text)
		abort();
	if (kafka_event__decode(text, strlen(text), &again, again_reason, sizeof(again_reason)) !=
	    KAFKA_EVENT_OK)
		abort();
	if (again.type != ev.type || strcmp(again.request_id, ev.request_id) != 0 ||
	    strcmp(again.sandbox_id, ev.sandbox_id) != 0 || again.sent_at_ms != ev.sent_at_ms ||
	    !json_equal(again.spec ? again.spec : again.result, ev.spec ? ev.spec : ev.result))
		abort();
	free(text);
	kafka_event__clear(&again);
	kafka_event__clear(&ev);
	return 0;
}
