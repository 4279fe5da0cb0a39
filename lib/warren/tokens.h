/* tokens: hashing, derivation and comparison of every secret warren
 * handles (docs/e2b-compatibility.md, security). Tokens are derived, never stored. */
#ifndef WARREN_TOKENS_H
#define WARREN_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKENS_SHA256_HEX_LEN 64

/* len bytes as lower-case hex; out needs 2 * len + 1 bytes. */
void tokens__hex(const void *bytes, size_t len, char *out);
/* Lower-case hex SHA-256 of data; out needs 65 bytes. */
void tokens__sha256_hex(const void *data, size_t len, char out[TOKENS_SHA256_HEX_LEN + 1]);
/* Lower-case hex HMAC-SHA256(key, message); out needs 65 bytes. */
void tokens__hmac_sha256_hex(const char *key, const char *message,
			     char out[TOKENS_SHA256_HEX_LEN + 1]);
/* The agent access token of a sandbox: hex HMAC-SHA256(seed, sandbox_id). */
void tokens__access_token(const char *seed, const char *sandbox_id,
			  char out[TOKENS_SHA256_HEX_LEN + 1]);
/* The public-traffic token: hex HMAC-SHA256(seed, "sandbox-traffic-" + id). */
void tokens__traffic_token(const char *seed, const char *sandbox_id,
			   char out[TOKENS_SHA256_HEX_LEN + 1]);
/* Constant-time equality of two NUL-terminated strings (time depends only
 * on the length of b, the secret side's length leaks nothing beyond it). */
bool tokens__equal(const char *a, const char *b);
/* True when the SHA-256 (sha512: SHA-512) of token, in lower-case hex,
 * equals hex (compared in constant time): an agent's --token-hash check.
 * NULL token: false. */
bool tokens__digest_matches(const char *token, bool sha512, const char *hex);
/* envd v1 file-URL signature: "v1_" + base64(sha256(path:op:user:token[:exp])),
 * standard alphabet without padding. expiration < 0 means none. out >= 64. */
void tokens__file_signature(const char *path, const char *operation, const char *username,
			    const char *token, int64_t expiration, char *out, size_t out_len);

#endif
