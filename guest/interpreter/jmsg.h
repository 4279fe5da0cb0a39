/* jmsg: Jupyter messaging protocol (v5.3) wire messages, without sockets.
 * A message on the wire is [identities..., "<IDS|MSG>", signature, header,
 * parent_header, metadata, content, buffers...]; the signature is the hex
 * HMAC-SHA256 of the four JSON frames under the connection file's key.
 * docs/code-interpreter.md. */
#ifndef WARREN_INTERPRETER_JMSG_H
#define WARREN_INTERPRETER_JMSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define JMSG_DELIMITER	 "<IDS|MSG>"
#define JMSG_SIG_HEX_LEN 64
#define JMSG_ID_MAX	 128
#define JMSG_TYPE_MAX	 64

/* One received or outgoing frame. */
struct jmsg_frame {
	const void *data;
	size_t len;
};

/* A decoded message. The json_t fields are owned (jmsg__clear frees them). */
struct jmsg {
	json_t *header, *parent_header, *metadata, *content;
	char msg_type[JMSG_TYPE_MAX];	 /* header.msg_type */
	char parent_msg_id[JMSG_ID_MAX]; /* parent_header.msg_id, "" if none */
};

/* The four JSON frames of an outgoing message and their signature; every
 * string is owned (jmsg__encoded_clear frees them). */
struct jmsg_encoded {
	char signature[JMSG_SIG_HEX_LEN + 1];
	char *parts[4]; /* header, parent_header, metadata, content */
};

/* Hex HMAC-SHA256 over the four parts under key (key "" = no signing:
 * out is ""). Returns 0, or -1 when OpenSSL fails. */
int jmsg__sign(const char *key, const struct jmsg_frame parts[4], char out[JMSG_SIG_HEX_LEN + 1]);

/* Builds and signs a request: a header with msg_id, session, msg_type,
 * the date and version 5.3, empty parent and metadata, content (borrowed;
 * NULL = {}). Returns 0 or -1 (out cleared). */
int jmsg__encode(const char *key, const char *session, const char *msg_id, const char *msg_type,
		 json_t *content, struct jmsg_encoded *out);
void jmsg__encoded_clear(struct jmsg_encoded *encoded);

/* Decodes frames as received (identities first). Checks the delimiter, the
 * signature (when key is not ""; constant-time), that the four parts are
 * JSON objects and that header.msg_type is a string. Returns 0, or -1 with
 * a reason in err (hostile input never crashes it). */
int jmsg__decode(const char *key, const struct jmsg_frame *frames, size_t count, struct jmsg *out,
		 char *err, size_t err_len);
void jmsg__clear(struct jmsg *msg);

#endif
