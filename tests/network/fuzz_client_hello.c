/* libFuzzer target for the egress proxy's hostile-input parsers: the TLS
 * ClientHello SNI parser first of all, and the HTTP Host and DNS answer
 * parsers on the same bytes. Build: cmake -DCMAKE_C_COMPILER=clang
 * -DWARREN_FUZZ=ON; ctest -L fuzz runs it briefly. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "warren/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *name = NULL;
	char sni[NET_SNI_MAX + 1];
	size_t name_len = 0;
	struct in_addr answers[8];
	volatile uint8_t sink = 0;

	if (net_parse__tls_sni(data, size, sni, &name_len) == NET_PARSE_OK) {
		if (name_len == 0 || name_len > NET_SNI_MAX || strlen(sni) != name_len)
			__builtin_trap();
	}
	if (net_parse__http_host(data, size, &name, &name_len) == NET_PARSE_OK) {
		if ((const uint8_t *)name < data || (const uint8_t *)name + name_len > data + size)
			__builtin_trap();
		for (size_t i = 0; i < name_len; i++)
			sink ^= (uint8_t)name[i];
	}
	if (size >= 2) {
		uint16_t id = (uint16_t)(data[0] << 8 | data[1]);

		uint32_t ttl;

		if (net_parse__dns_answer(data, size, id, answers, 8, &ttl) > 8)
			__builtin_trap();
	}
	(void)sink;
	return 0;
}
