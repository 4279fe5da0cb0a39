#include "warren/tokens.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

void tokens__hex(const void *bytes, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *in = bytes;

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * len] = '\0';
}

void tokens__sha256_hex(const void *data, size_t len, char out[TOKENS_SHA256_HEX_LEN + 1])
{
	uint8_t digest[SHA256_DIGEST_LENGTH];

	SHA256(data, len, digest);
	tokens__hex(digest, sizeof(digest), out);
}

void tokens__hmac_sha256_hex(const char *key, const char *message,
			     char out[TOKENS_SHA256_HEX_LEN + 1])
{
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;

	HMAC(EVP_sha256(), key, (int)strlen(key), (const uint8_t *)message, strlen(message), digest,
	     &digest_len);
	tokens__hex(digest, digest_len, out);
}

void tokens__access_token(const char *seed, const char *sandbox_id,
			  char out[TOKENS_SHA256_HEX_LEN + 1])
{
	tokens__hmac_sha256_hex(seed, sandbox_id, out);
}

void tokens__traffic_token(const char *seed, const char *sandbox_id,
			   char out[TOKENS_SHA256_HEX_LEN + 1])
{
	char message[128];

	snprintf(message, sizeof(message), "sandbox-traffic-%s", sandbox_id);
	tokens__hmac_sha256_hex(seed, message, out);
}

bool tokens__equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = (unsigned char)(la != lb);

	for (size_t i = 0; i < lb; i++)
		diff |= (unsigned char)(b[i] ^ (i < la ? a[i] : 0));
	return diff == 0;
}

void tokens__file_signature(const char *path, const char *operation, const char *username,
			    const char *token, int64_t expiration, char *out, size_t out_len)
{
	uint8_t digest[SHA256_DIGEST_LENGTH];
	unsigned char b64[64];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char expiry[32];
	int n;

	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, path, strlen(path));
	EVP_DigestUpdate(ctx, ":", 1);
	EVP_DigestUpdate(ctx, operation, strlen(operation));
	EVP_DigestUpdate(ctx, ":", 1);
	EVP_DigestUpdate(ctx, username, strlen(username));
	EVP_DigestUpdate(ctx, ":", 1);
	EVP_DigestUpdate(ctx, token, strlen(token));
	if (expiration >= 0) {
		snprintf(expiry, sizeof(expiry), ":%lld", (long long)expiration);
		EVP_DigestUpdate(ctx, expiry, strlen(expiry));
	}
	EVP_DigestFinal_ex(ctx, digest, NULL);
	EVP_MD_CTX_free(ctx);
	n = EVP_EncodeBlock(b64, digest, sizeof(digest));
	while (n > 0 && b64[n - 1] == '=')
		n--;
	b64[n] = '\0';
	snprintf(out, out_len, "v1_%s", b64);
}

bool tokens__digest_matches(const char *token, bool sha512, const char *hex)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;
	char computed[2 * EVP_MAX_MD_SIZE + 1];

	if (!token || !EVP_Digest(token, strlen(token), digest, &digest_len,
				  sha512 ? EVP_sha512() : EVP_sha256(), NULL))
		return false;
	for (unsigned int i = 0; i < digest_len; i++)
		snprintf(computed + 2 * i, 3, "%02x", digest[i]);
	computed[2 * digest_len] = '\0';
	return tokens__equal(computed, hex);
}
