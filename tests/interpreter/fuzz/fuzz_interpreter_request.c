/* libFuzzer target: warren-interpreter's parsers of hostile input. The
 * first byte picks the parser: the /execute and /contexts bodies, or a
 * Jupyter message (frames split at 0xff bytes) decoded with and without a
 * key and mapped to an NDJSON line. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "jmsg.h"
#include "outputs.h"
#include "requests.h"

#define MAX_FRAMES 16

static void fuzz_message(const uint8_t *data, size_t size)
{
	struct jmsg_frame frames[MAX_FRAMES];
	size_t count = 0, start = 0;
	struct jmsg msg;
	char err[128];

	for (size_t i = 0; i <= size && count < MAX_FRAMES; i++) {
		if (i == size || data[i] == 0xff) {
			frames[count++] = (struct jmsg_frame){data + start, i - start};
			start = i + 1;
		}
	}
	for (int keyed = 0; keyed < 2; keyed++) {
		if (jmsg__decode(keyed ? "key" : "", frames, count, &msg, err, sizeof(err)) == 0) {
			free(outputs__serialize(outputs__from_iopub(msg.msg_type, msg.content)));
			jmsg__clear(&msg);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];

	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0: {
		struct execute_request r;

		if (requests__execute((const char *)data + 1, size - 1, &r, err, sizeof(err)) == 0)
			requests__execute_clear(&r);
		break;
	}
	case 1: {
		struct context_request r;

		if (requests__context((const char *)data + 1, size - 1, &r, err, sizeof(err)) == 0)
			requests__context_clear(&r);
		break;
	}
	default:
		fuzz_message(data + 1, size - 1);
	}
	return 0;
}
