/* libFuzzer: the agent's small text parsers (Basic auth, --token-hash,
 * Content-Type, paths, base64 round trip) on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent_paths.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), out[4096], user[64], encoded[8192];
	uint8_t decoded[4096];
	struct token_hash hash;
	long n;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	wire__parse_basic_auth_user(text, user, sizeof(user));
	wire__parse_token_hash(text, &hash);
	wire__content_type_is(text, "application/json");
	if (paths__resolve(text, "/home/user", out, sizeof(out))) {
		if (out[0] != '/' || strstr(out, "/../") || strstr(out, "//"))
			abort();
		paths__basename(out);
	}
	n = wire__base64_decode(text, strlen(text), decoded, sizeof(decoded));
	if (n >= 0 && (size_t)n <= 3 * (sizeof(encoded) / 4) - 3) {
		uint8_t again[4096];
		wire__base64_encode(decoded, (size_t)n, encoded);
		if (wire__base64_decode(encoded, strlen(encoded), again, sizeof(again)) != n ||
		    memcmp(again, decoded, (size_t)n) != 0)
			abort();
	}
	if (size <= 2048) {
		wire__base64_encode(data, size, encoded);
		if (wire__base64_decode(encoded, strlen(encoded), decoded, sizeof(decoded)) !=
			(long)size ||
		    memcmp(decoded, data, size) != 0)
			abort();
	}
	free(text);
	return 0;
}
