/* wire: pure decoders for what clients send the agent (protobuf JSON
 * mapping of process.proto / filesystem.proto messages, HTTP auth headers,
 * the --token-hash flag). No I/O, no global state: unit tested and fuzzed
 * (tests/agent/fuzz). Every input is hostile. */
#ifndef WARREN_AGENT_WIRE_H
#define WARREN_AGENT_WIRE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MAX_ARGS 4096
#define WIRE_MAX_ENVS 4096

/* process.ProcessConfig {cmd, args[], envs{}, cwd?} decoded for execve. */
struct process_config {
	char *cmd;
	char **argv; /* argv[0] = cmd, NULL-terminated */
	size_t argc;
	char **envs; /* "KEY=VALUE", NULL-terminated */
	size_t env_count;
	char *cwd; /* NULL when absent or empty */
};

/* process.ProcessSelector: oneof pid (uint32) | tag (string). */
struct process_selector {
	bool has_pid;
	uint32_t pid;
	char tag[256];
};

enum token_hash_algorithm { TOKEN_HASH_NONE = 0, TOKEN_HASH_SHA256, TOKEN_HASH_SHA512 };

struct token_hash {
	enum token_hash_algorithm algorithm;
	char hex[129]; /* lower-case */
};

/* Decodes a ProcessConfig JSON object; false with a message in err on any
 * wrong type, embedded NUL, '=' in an env key or limit overrun. */
bool wire__parse_process_config(const json_t *object, struct process_config *out, char *err,
				size_t err_len);
void wire__process_config_free(struct process_config *config);
/* Decodes a ProcessSelector JSON object ({"pid":N} or {"tag":"t"}). */
bool wire__parse_selector(const json_t *object, struct process_selector *out, char *err,
			  size_t err_len);
/* The POSIX signal for a process.Signal JSON value (enum name or number):
 * SIGNAL_SIGKILL/9 and SIGNAL_SIGTERM/15; 0 for anything else. */
int wire__parse_signal(const json_t *value);
/* Decodes proto3 JSON "bytes" (standard or URL-safe base64, padding
 * optional) into out (capacity out_cap). Returns the length or -1. */
long wire__base64_decode(const char *text, size_t text_len, uint8_t *out, size_t out_cap);
/* Standard base64 with padding, NUL-terminated; out needs 4*ceil(len/3)+1. */
void wire__base64_encode(const uint8_t *data, size_t len, char *out);
/* The user name in "Authorization: Basic base64(user:password)"; false when
 * the header is absent, malformed or the name is empty or over out_len-1. */
bool wire__parse_basic_auth_user(const char *header, char *out, size_t out_len);
/* Parses "sha256:<64 hex>" or "sha512:<128 hex>" (hex case-insensitive). */
bool wire__parse_token_hash(const char *text, struct token_hash *out);
/* True when the media type of a Content-Type header equals type
 * (case-insensitive, parameters such as "; charset=utf-8" ignored). */
bool wire__content_type_is(const char *header, const char *type);
/* True when an Accept-Encoding header accepts gzip ("gzip", "x-gzip" or
 * "*" without q=0); NULL or absent: false. */
bool wire__accepts_gzip(const char *header);

#endif
