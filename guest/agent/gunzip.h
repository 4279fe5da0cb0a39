/* gunzip: bounded gzip decoding of request bodies (POST /files with
 * Content-Encoding: gzip, compressed Connect messages). Pure, no I/O: the
 * caller feeds compressed bytes and receives the decoded ones through a
 * sink; more than the caller's limit of decoded bytes ends the decoding
 * (a zip bomb costs at most that much). Concatenated gzip members are
 * decoded one after another, as gzip(1) does. */
#ifndef WARREN_AGENT_GUNZIP_H
#define WARREN_AGENT_GUNZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gunzip_result {
	GUNZIP_OK = 0,
	GUNZIP_TOO_LARGE, /* decoded bytes above the limit */
	GUNZIP_CORRUPT,	  /* not gzip, bad checksum, garbage after a member */
	GUNZIP_TRUNCATED, /* the input ended inside a member (gunzip__finish) */
	GUNZIP_NO_MEMORY,
	GUNZIP_SINK, /* the sink refused (its own error stands) */
};

/* Receives decoded bytes; false stops the decoding (GUNZIP_SINK). */
typedef bool (*gunzip_sink)(void *context, const uint8_t *data, size_t len);

struct gunzip;

/* A decoder that yields at most max_output decoded bytes; NULL when out
 * of memory. */
struct gunzip *gunzip__new(uint64_t max_output);
/* Decodes len more input bytes into sink. Once it failed, it keeps
 * answering the same error. */
enum gunzip_result gunzip__feed(struct gunzip *gunzip, const uint8_t *in, size_t len,
				gunzip_sink sink, void *context);
/* The input is complete: GUNZIP_TRUNCATED unless it ended after a whole
 * member (an empty input is truncated too). */
enum gunzip_result gunzip__finish(struct gunzip *gunzip);
void gunzip__free(struct gunzip *gunzip);
/* Decoded bytes so far. */
uint64_t gunzip__output_size(const struct gunzip *gunzip);

/* Decodes a whole buffer into a new malloc'ed one (*out, *out_len; a NUL
 * follows the bytes), at most max_output bytes. */
enum gunzip_result gunzip__buffer(const uint8_t *in, size_t len, uint64_t max_output, uint8_t **out,
				  size_t *out_len);
/* A short English description of a result, for error messages. */
const char *gunzip__strerror(enum gunzip_result result);

#endif
