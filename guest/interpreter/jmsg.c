/* jmsg: Jupyter wire messages (jmsg.h). */
#include "jmsg.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "warren/tokens.h"

int jmsg__sign(const char *key, const struct jmsg_frame parts[4], char out[JMSG_SIG_HEX_LEN + 1])
{
	unsigned char mac[32];
	size_t mac_len = 0;
	EVP_MAC *hmac = NULL;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];
	int ret = -1;

	out[0] = '\0';
	if (!key[0])
		return 0;
	hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!hmac)
		goto out;
	ctx = EVP_MAC_CTX_new(hmac);
	if (!ctx)
		goto out;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(ctx, (const unsigned char *)key, strlen(key), params))
		goto out;
	for (int i = 0; i < 4; i++)
		if (!EVP_MAC_update(ctx, parts[i].data, parts[i].len))
			goto out;
	if (!EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)) || mac_len != sizeof(mac))
		goto out;
	for (size_t i = 0; i < mac_len; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
	ret = 0;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(hmac);
	return ret;
}

void jmsg__encoded_clear(struct jmsg_encoded *encoded)
{
	for (int i = 0; i < 4; i++) {
		free(encoded->parts[i]);
		encoded->parts[i] = NULL;
	}
	encoded->signature[0] = '\0';
}

int jmsg__encode(const char *key, const char *session, const char *msg_id, const char *msg_type,
		 json_t *content, struct jmsg_encoded *out)
{
	char date[96];
	struct timespec now;
	struct tm tm;
	struct jmsg_frame frames[4];
	json_t *header;

	memset(out, 0, sizeof(*out));
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(date, sizeof(date), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000);
	header =
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "msg_id", msg_id, "session", session,
		      "username", "warren", "date", date, "msg_type", msg_type, "version", "5.3");
	if (!header)
		return -1;
	out->parts[0] = json_dumps(header, JSON_COMPACT);
	json_decref(header);
	out->parts[1] = strdup("{}");
	out->parts[2] = strdup("{}");
	out->parts[3] = content ? json_dumps(content, JSON_COMPACT) : strdup("{}");
	for (int i = 0; i < 4; i++) {
		if (!out->parts[i])
			goto fail;
		frames[i].data = out->parts[i];
		frames[i].len = strlen(out->parts[i]);
	}
	if (jmsg__sign(key, frames, out->signature))
		goto fail;
	return 0;
fail:
	jmsg__encoded_clear(out);
	return -1;
}

void jmsg__clear(struct jmsg *msg)
{
	json_decref(msg->header);
	json_decref(msg->parent_header);
	json_decref(msg->metadata);
	json_decref(msg->content);
	memset(msg, 0, sizeof(*msg));
}

int jmsg__decode(const char *key, const struct jmsg_frame *frames, size_t count, struct jmsg *out,
		 char *err, size_t err_len)
{
	static const size_t delimiter_len = sizeof(JMSG_DELIMITER) - 1;
	char expected[JMSG_SIG_HEX_LEN + 1], got[JMSG_SIG_HEX_LEN + 1];
	json_t **slots[4] = {&out->header, &out->parent_header, &out->metadata, &out->content};
	size_t d;
	const char *text;

	memset(out, 0, sizeof(*out));
	for (d = 0; d < count; d++)
		if (frames[d].len == delimiter_len &&
		    !memcmp(frames[d].data, JMSG_DELIMITER, delimiter_len))
			break;
	if (d == count || count - d < 6) {
		snprintf(err, err_len, "no delimiter or fewer than 5 frames after it");
		return -1;
	}
	if (key[0]) {
		if (frames[d + 1].len != JMSG_SIG_HEX_LEN) {
			snprintf(err, err_len, "signature has %zu bytes", frames[d + 1].len);
			return -1;
		}
		memcpy(got, frames[d + 1].data, JMSG_SIG_HEX_LEN);
		got[JMSG_SIG_HEX_LEN] = '\0';
		if (jmsg__sign(key, &frames[d + 2], expected) || !tokens__equal(got, expected)) {
			snprintf(err, err_len, "bad signature");
			return -1;
		}
	}
	for (int i = 0; i < 4; i++) {
		json_error_t jerr;

		*slots[i] = json_loadb(frames[d + 2 + i].data, frames[d + 2 + i].len,
				       JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_object(*slots[i])) {
			snprintf(err, err_len, "part %d is not a JSON object", i);
			goto fail;
		}
	}
	text = json_string_value(json_object_get(out->header, "msg_type"));
	if (!text || strlen(text) >= sizeof(out->msg_type)) {
		snprintf(err, err_len, "header.msg_type missing or too long");
		goto fail;
	}
	snprintf(out->msg_type, sizeof(out->msg_type), "%s", text);
	text = json_string_value(json_object_get(out->parent_header, "msg_id"));
	if (text && strlen(text) < sizeof(out->parent_msg_id))
		snprintf(out->parent_msg_id, sizeof(out->parent_msg_id), "%s", text);
	return 0;
fail:
	jmsg__clear(out);
	return -1;
}
