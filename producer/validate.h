/* validate: request bodies of the E2B REST API (docs/e2b-compatibility.md, "REST
 * API"), checked before anything is stored or produced. Pure functions:
 * no I/O, every field hostile. Each refusal carries the HTTP status and
 * the exact message the client sees (docs/api.md lists them all). */
#ifndef WARREN_API_VALIDATE_H
#define WARREN_API_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define API_TIMEOUT_DEFAULT_S	  15  /* E2B: the API's default when absent */
#define API_NETWORK_RULES_MAX	  256 /* entries per allowOut / denyOut */
#define API_ALL_TRAFFIC		  "0.0.0.0/0"
#define API_MASK_REQUEST_HOST_MAX 255
#define API_METADATA_ENTRIES_MAX  64
#define API_ENV_VARS_MAX	  256
/* The metadata key that asks for worker hosts of one runtime. */
#define API_METADATA_RUNTIME "warren.runtime"

/* The exact messages of docs/e2b-compatibility.md and our own (docs/api.md). */
#define API_MSG_DOMAIN_NEEDS_ALL_TRAFFIC                                                           \
	"When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out"

struct api_error {
	int status;	   /* HTTP status */
	char message[512]; /* the "message" of the JSON error body */
};

#define API_VOLUME_MOUNTS_MAX 8	  /* volumeMounts entries per create */
#define API_VOLUME_PATH_MAX   255 /* a mount path's length */

struct api_volume_mount {
	char name[64];			    /* the team's volume name */
	char path[API_VOLUME_PATH_MAX + 1]; /* absolute, normalised */
};

/* A validated POST /sandboxes body. Owned JSON members: api_create_request__clear. */
struct api_create_request {
	char template_id[129];
	int32_t timeout_s;
	bool secure;
	bool allow_internet_access;
	bool allow_public_traffic;
	char mask_request_host[API_MASK_REQUEST_HOST_MAX + 1]; /* "" when none */
	json_t *network;       /* normalised egress policy: {allowOut, denyOut, allowPublicTraffic,
				  allowInternetAccess, maskRequestHost?} */
	json_t *metadata;      /* object of strings */
	json_t *env_vars;      /* object of strings */
	char runtime[8];       /* metadata "warren.runtime": "vm", "jail" or "" (any host) */
	bool pause_on_timeout; /* autoPause / lifecycle.onTimeout = "pause" */
	bool auto_resume;      /* autoResume.enabled / lifecycle.autoResume */
	struct api_volume_mount volume_mounts[API_VOLUME_MOUNTS_MAX]; /* volumeMounts */
	int volume_mount_count;
};

enum api_address_kind {
	API_ADDRESS_INVALID = 0,
	API_ADDRESS_IP,
	API_ADDRESS_CIDR,
	API_ADDRESS_DOMAIN
};

/* Classifies one allowOut/denyOut entry: an IPv4/IPv6 address, a CIDR
 * range (prefix within the family's width), a domain name (exact or
 * "*.suffix", labels of [A-Za-z0-9-], last label not all digits), or
 * invalid. */
enum api_address_kind validate__address(const char *entry);

/* Parses len bytes of a request body as a JSON object. NULL with err
 * filled (400, "malformed JSON body: ...") when it is not one. */
json_t *validate__parse_body(const char *body, size_t len, struct api_error *err);

/* Validates a POST /sandboxes body against the team's maximum timeout
 * (seconds). 0 and *out filled, or -1 with err filled (out cleared). */
int validate__create(const json_t *body, int32_t max_timeout_s, struct api_create_request *out,
		     struct api_error *err);
void api_create_request__clear(struct api_create_request *request);

/* Validates an egress policy {allowOut[], denyOut[]} (create's `network`
 * or the PUT /sandboxes/{id}/network body) and writes the normalised rules
 * ({allowOut, denyOut} arrays, ALL_TRAFFIC added to denyOut when
 * allow_internet_access is false) into *rules (new object). 0 or -1. */
int validate__network_rules(const json_t *network, bool allow_internet_access, json_t **rules,
			    struct api_error *err);

/* Validates a PUT /sandboxes/{id}/network body {allowOut[], denyOut[],
 * allow_internet_access} (the SDK's updateNetwork; omitted lists are
 * cleared) into *rules as validate__network_rules does. Fields warren does
 * not implement (egressProxy, non-empty rules) are a 400 naming them. */
int validate__network_update(const json_t *body, json_t **rules, struct api_error *err);

/* The {timeout} body of POST /sandboxes/{id}/timeout and the {duration} body
 * of /refreshes (field name given): a positive integer number of seconds,
 * capped at max_s. Absent: fallback_s (or 400 when fallback_s <= 0). */
int validate__seconds_field(const json_t *body, const char *field, int32_t fallback_s,
			    int32_t max_s, int32_t *out, struct api_error *err);

/* ---- volumes (validate_volumes.c, docs/volumes.md) ---- */

/* The POST /volumes body {name}: 0 and name (a valid volume name) filled,
 * or -1 with err (400 naming the problem). */
int validate__volume_create(const json_t *body, char name[64], struct api_error *err);
/* A mount path inside the sandbox: absolute, segments of [A-Za-z0-9._-]
 * but never "." or "..", no empty segment, not "/" and not under /proc,
 * /sys or /dev. 0, or -1 with err (400). */
int validate__mount_path(const char *path, struct api_error *err);
/* The create's volumeMounts [{name, path}] (absent or null: none): at most
 * API_VOLUME_MOUNTS_MAX, each valid, no path twice or inside another, no
 * volume twice. 0 with *count filled, or -1 with err (400). */
int validate__volume_mounts(const json_t *mounts,
			    struct api_volume_mount out[API_VOLUME_MOUNTS_MAX], int *count,
			    struct api_error *err);

#endif
