/* libFuzzer: a Connect streaming request body as warren-agent receives it
 * (envelope, then the JSON of a StartRequest/ConnectRequest/SendInput). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "envelope.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *message;
	size_t message_len;
	struct process_config config;
	struct process_selector selector;
	char err[256];
	json_t *json, *input;
	uint8_t bytes[4096];

	if (envelope__parse_single(data, size, 1024 * 1024, &message, &message_len) != ENVELOPE_OK)
		return 0;
	json = json_loadb((const char *)message, message_len, 0, NULL);
	if (!json)
		return 0;
	if (wire__parse_process_config(json_object_get(json, "process"), &config, err, sizeof(err)))
		wire__process_config_free(&config);
	wire__parse_selector(json_object_get(json, "process"), &selector, err, sizeof(err));
	wire__parse_signal(json_object_get(json, "signal"));
	input = json_object_get(json_object_get(json, "input"), "stdin");
	if (json_is_string(input))
		wire__base64_decode(json_string_value(input), json_string_length(input), bytes,
				    sizeof(bytes));
	json_decref(json);
	return 0;
}
