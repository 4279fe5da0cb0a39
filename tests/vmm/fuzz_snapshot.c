/* libFuzzer target: the snapshot parser (vmm/snapshot.c) on hostile input.
 * The input is a state section; the harness puts a valid header with the
 * right checksum in front of it (what a hostile writer can do), and every
 * other input is also tried raw, header included. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct snapshot_state state;
	char error[256];
	uint8_t *file = malloc(SNAPSHOT_HEADER_SIZE + size + 1);
	uint64_t state_size = size;
	uint32_t version = SNAPSHOT_VERSION, header_size = SNAPSHOT_HEADER_SIZE;
	EVP_MD_CTX *context = EVP_MD_CTX_new();
	unsigned int length;

	if (file == NULL || context == NULL)
		abort();
	snapshot__decode(data, size, &state, error, sizeof(error));
	memset(file, 0, SNAPSHOT_HEADER_SIZE);
	memcpy(file, SNAPSHOT_MAGIC, 8);
	memcpy(file + 8, &version, 4);
	memcpy(file + 12, &header_size, 4);
	memcpy(file + 16, &state_size, 8);
	if (size >= 12) /* vCPU, device and record counts from the input's end */
		memcpy(file + 24, data + size - 12, 12);
	memcpy(file + SNAPSHOT_HEADER_SIZE, data, size);
	EVP_DigestInit_ex(context, EVP_sha256(), NULL);
	EVP_DigestUpdate(context, file, 96);
	EVP_DigestUpdate(context, file + SNAPSHOT_HEADER_SIZE, size);
	EVP_DigestFinal_ex(context, file + 96, &length);
	EVP_MD_CTX_free(context);
	snapshot__decode(file, SNAPSHOT_HEADER_SIZE + size, &state, error, sizeof(error));
	free(file);
	return 0;
}
