/* gunzip: bounded gzip decoding with zlib, see gunzip.h. */
#include "gunzip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define GUNZIP_CHUNK (64 * 1024)

struct gunzip {
	z_stream zs;
	uint64_t max_output, output;
	enum gunzip_result failed; /* sticky */
	bool in_member;		   /* inside a member (started, not ended) */
	unsigned long members;	   /* members decoded to their end */
	uint8_t out[GUNZIP_CHUNK];
};

struct gunzip *gunzip__new(uint64_t max_output)
{
	struct gunzip *gunzip = calloc(1, sizeof(*gunzip));

	if (!gunzip)
		return NULL;
	/* 16 + MAX_WBITS: a gzip header and trailer, not zlib or raw. */
	if (inflateInit2(&gunzip->zs, 16 + MAX_WBITS) != Z_OK) {
		free(gunzip);
		return NULL;
	}
	gunzip->max_output = max_output;
	return gunzip;
}

void gunzip__free(struct gunzip *gunzip)
{
	if (!gunzip)
		return;
	inflateEnd(&gunzip->zs);
	free(gunzip);
}

uint64_t gunzip__output_size(const struct gunzip *gunzip)
{
	return gunzip->output;
}

/* Hands one round of output to sink, checking the bound first. */
static enum gunzip_result deliver(struct gunzip *gunzip, gunzip_sink sink, void *context)
{
	size_t produced = GUNZIP_CHUNK - gunzip->zs.avail_out;

	if (produced == 0)
		return GUNZIP_OK;
	gunzip->output += produced;
	if (gunzip->output > gunzip->max_output)
		return GUNZIP_TOO_LARGE;
	return sink(context, gunzip->out, produced) ? GUNZIP_OK : GUNZIP_SINK;
}

enum gunzip_result gunzip__feed(struct gunzip *gunzip, const uint8_t *in, size_t len,
				gunzip_sink sink, void *context)
{
	enum gunzip_result result = GUNZIP_OK;
	int status;

	if (gunzip->failed)
		return gunzip->failed;
	gunzip->zs.next_in = (Bytef *)in;
	gunzip->zs.avail_in = (uInt)len; /* callers feed far less than 4 GiB */
	/* Until the input is used up and no output is pending. */
	while (result == GUNZIP_OK && (gunzip->zs.avail_in > 0 || gunzip->zs.avail_out == 0)) {
		gunzip->zs.next_out = gunzip->out;
		gunzip->zs.avail_out = GUNZIP_CHUNK;
		status = inflate(&gunzip->zs, Z_NO_FLUSH);
		if (status == Z_BUF_ERROR)
			break; /* no progress possible: needs more input */
		if (status == Z_MEM_ERROR)
			result = GUNZIP_NO_MEMORY;
		else if (status != Z_OK && status != Z_STREAM_END)
			result = GUNZIP_CORRUPT;
		else
			result = deliver(gunzip, sink, context);
		gunzip->in_member = status == Z_OK;
		gunzip->members += status == Z_STREAM_END;
		/* A member ended; another may follow (gzip -c a b > c). */
		if (result == GUNZIP_OK && status == Z_STREAM_END &&
		    inflateReset(&gunzip->zs) != Z_OK)
			result = GUNZIP_CORRUPT;
	}
	gunzip->failed = result;
	return result;
}

enum gunzip_result gunzip__finish(struct gunzip *gunzip)
{
	if (gunzip->failed)
		return gunzip->failed;
	/* An empty body is not gzip either. */
	if (gunzip->in_member || gunzip->members == 0)
		gunzip->failed = GUNZIP_TRUNCATED;
	return gunzip->failed;
}

struct growing {
	uint8_t *data;
	size_t len, cap;
};

static bool append(void *context, const uint8_t *data, size_t len)
{
	struct growing *buffer = context;
	uint8_t *grown;
	size_t cap;

	if (buffer->len + len + 1 > buffer->cap) {
		cap = buffer->cap ? buffer->cap : 4096;
		while (cap < buffer->len + len + 1)
			cap *= 2;
		grown = realloc(buffer->data, cap);
		if (!grown)
			return false;
		buffer->data = grown;
		buffer->cap = cap;
	}
	memcpy(buffer->data + buffer->len, data, len);
	buffer->len += len;
	buffer->data[buffer->len] = '\0';
	return true;
}

enum gunzip_result gunzip__buffer(const uint8_t *in, size_t len, uint64_t max_output, uint8_t **out,
				  size_t *out_len)
{
	struct gunzip *gunzip = gunzip__new(max_output);
	struct growing buffer = {0};
	enum gunzip_result result;

	if (!gunzip)
		return GUNZIP_NO_MEMORY;
	result = gunzip__feed(gunzip, in, len, append, &buffer);
	if (result == GUNZIP_OK)
		result = gunzip__finish(gunzip);
	if (result == GUNZIP_SINK)
		result = GUNZIP_NO_MEMORY;
	if (result == GUNZIP_OK && !buffer.data)
		result = append(&buffer, (const uint8_t *)"", 0) ? GUNZIP_OK : GUNZIP_NO_MEMORY;
	gunzip__free(gunzip);
	if (result != GUNZIP_OK) {
		free(buffer.data);
		return result;
	}
	*out = buffer.data;
	*out_len = buffer.len;
	return GUNZIP_OK;
}

const char *gunzip__strerror(enum gunzip_result result)
{
	switch (result) {
	case GUNZIP_OK:
		return "ok";
	case GUNZIP_TOO_LARGE:
		return "decompressed body larger than the limit";
	case GUNZIP_CORRUPT:
		return "body is not valid gzip";
	case GUNZIP_TRUNCATED:
		return "gzip body is truncated";
	case GUNZIP_NO_MEMORY:
		return "out of memory";
	case GUNZIP_SINK:
		return "write failed";
	}
	return "unknown gzip error";
}
