/* validate: POST /sandboxes and friends (docs/e2b-compatibility.md, "REST API",
 * Validation; ARCHITECTURE.md, "Sandbox network" for the egress rules). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"
#include "warren/cidr.h"
#include "warren/config.h"

static int validate__fail(struct api_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int validate__fail(struct api_error *err, int status, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		err->status = status;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Client text echoed in a message is cut to keep messages bounded. */
#define VALIDATE_ECHO "%.100s"

static bool validate__domain(const char *s)
{
	size_t len = strlen(s), label = 0;
	bool digits_only = true;

	if (!strncmp(s, "*.", 2)) {
		s += 2;
		len -= 2;
	}
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			digits_only = true;
			continue;
		}
		if (!isalnum(c) && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (!isdigit(c))
			digits_only = false;
		if (++label > 63)
			return false;
	}
	/* No empty last label, no trailing hyphen, and a last label of digits
	 * is a malformed address ("1.2.3"), not a name. */
	return label > 0 && s[len - 1] != '-' && !digits_only;
}

enum api_address_kind validate__address(const char *entry)
{
	char address[64];
	const char *slash;
	unsigned char buf[16];
	int family, max_prefix;
	size_t address_len;

	if (!entry || !*entry || strlen(entry) > 253)
		return API_ADDRESS_INVALID;
	slash = strchr(entry, '/');
	address_len = slash ? (size_t)(slash - entry) : strlen(entry);
	if (address_len < sizeof(address)) {
		memcpy(address, entry, address_len);
		address[address_len] = '\0';
		family = strchr(address, ':') ? AF_INET6 : AF_INET;
		max_prefix = family == AF_INET6 ? 128 : 32;
		if (inet_pton(family, address, buf) == 1) {
			char *end;
			long prefix;

			if (!slash)
				return API_ADDRESS_IP;
			if (!isdigit((unsigned char)slash[1]) || strlen(slash + 1) > 3)
				return API_ADDRESS_INVALID;
			prefix = strtol(slash + 1, &end, 10);
			if (*end || prefix < 0 || prefix > max_prefix)
				return API_ADDRESS_INVALID;
			return API_ADDRESS_CIDR;
		}
	}
	if (slash)
		return API_ADDRESS_INVALID;
	return validate__domain(entry) ? API_ADDRESS_DOMAIN : API_ADDRESS_INVALID;
}

json_t *validate__parse_body(const char *body, size_t len, struct api_error *err)
{
	json_error_t json_error;
	json_t *value;

	if (!body || len == 0) {
		validate__fail(err, 400, "malformed JSON body: the body is empty");
		return NULL;
	}
	value = json_loadb(body, len, JSON_REJECT_DUPLICATES, &json_error);
	if (!value) {
		validate__fail(err, 400, "malformed JSON body: %s (line %d, column %d)",
			       json_error.text, json_error.line, json_error.column);
		return NULL;
	}
	if (!json_is_object(value)) {
		json_decref(value);
		validate__fail(err, 400, "malformed JSON body: expected a JSON object");
		return NULL;
	}
	return value;
}

static int validate__bool(const json_t *body, const char *key, bool fallback, bool *out,
			  struct api_error *err)
{
	const json_t *value = json_object_get(body, key);

	if (!value || json_is_null(value)) {
		*out = fallback;
		return 0;
	}
	if (!json_is_boolean(value))
		return validate__fail(err, 400, "%s must be a boolean", key);
	*out = json_is_true(value);
	return 0;
}

/* An object of strings (metadata, envVars); absent or null -> {}. */
static int validate__string_map(const json_t *body, const char *key, size_t max_entries,
				json_t **out, struct api_error *err)
{
	const json_t *value = json_object_get(body, key);
	const char *name;
	json_t *item;

	*out = NULL;
	if (!value || json_is_null(value)) {
		*out = json_object();
		return 0;
	}
	if (!json_is_object(value))
		return validate__fail(err, 400, "%s must be an object of strings", key);
	if (json_object_size(value) > max_entries)
		return validate__fail(err, 400, "%s has more than %zu entries", key, max_entries);
	json_object_foreach((json_t *)value, name, item)
	{
		if (!*name || strlen(name) > 256)
			return validate__fail(err, 400, "%s keys must be 1 to 256 characters", key);
		if (!json_is_string(item))
			return validate__fail(err, 400, "%s." VALIDATE_ECHO " must be a string",
					      key, name);
	}
	*out = json_deep_copy(value);
	return *out ? 0 : validate__fail(err, 500, "out of memory");
}

/* True when entry (an IP or CIDR) lies entirely inside one block of the
 * never-allow set the API knows: CIDR_NEVER_ALLOW_BUILTIN, the slot range
 * (slot_cidr) and net_never_allow. Such an entry could never take effect
 * (the worker denies those blocks before allowOut), so it is refused;
 * broader entries are accepted and never open those blocks. */
static bool validate__never_allowed(const char *entry)
{
	struct cidr c, never[64];
	int count = cidr__parse_list(CIDR_NEVER_ALLOW_BUILTIN, never, 64, NULL), more;

	if (count < 0 || cidr__parse(entry, &c) != 0)
		return false;
	if (cidr__parse(config__get("slot_cidr", "10.11.0.0/16"), &never[count]) == 0)
		count++;
	more = cidr__parse_list(config__get("net_never_allow", ""), never + count,
				64 - (size_t)count, NULL);
	if (more > 0)
		count += more;
	for (int i = 0; i < count; i++)
		if (cidr__covers(&never[i], &c))
			return true;
	return false;
}

static int validate__rule_list(const json_t *network, const char *key, bool domains_allowed,
			       json_t *out, bool *has_domain, bool *has_all_traffic,
			       struct api_error *err)
{
	const json_t *list = network ? json_object_get(network, key) : NULL;
	size_t index;
	json_t *item;

	if (!list || json_is_null(list))
		return 0;
	if (!json_is_array(list))
		return validate__fail(err, 400, "network.%s must be an array of strings", key);
	if (json_array_size(list) > API_NETWORK_RULES_MAX)
		return validate__fail(err, 400, "network.%s has more than %d entries", key,
				      API_NETWORK_RULES_MAX);
	json_array_foreach(list, index, item)
	{
		const char *entry = json_string_value(item);
		enum api_address_kind kind;

		if (!entry)
			return validate__fail(err, 400, "network.%s must be an array of strings",
					      key);
		kind = validate__address(entry);
		if (kind == API_ADDRESS_INVALID)
			return validate__fail(
			    err, 400,
			    "invalid IP address, CIDR range or domain in %s: \"" VALIDATE_ECHO "\"",
			    key, entry);
		if (kind == API_ADDRESS_DOMAIN && !domains_allowed)
			return validate__fail(err, 400,
					      "domains are not accepted in deny out, only IP "
					      "addresses and CIDR ranges: \"" VALIDATE_ECHO "\"",
					      entry);
		if (domains_allowed && kind != API_ADDRESS_DOMAIN && validate__never_allowed(entry))
			return validate__fail(err, 400,
					      "address in allowOut is never reachable from a "
					      "sandbox (loopback, link-local, metadata, multicast "
					      "or the platform's own networks): \"" VALIDATE_ECHO
					      "\"",
					      entry);
		if (kind == API_ADDRESS_DOMAIN)
			*has_domain = true;
		if (!strcmp(entry, API_ALL_TRAFFIC))
			*has_all_traffic = true;
		json_array_append_new(out, json_string(entry));
	}
	return 0;
}

int validate__network_rules(const json_t *network, bool allow_internet_access, json_t **rules,
			    struct api_error *err)
{
	json_t *allow = json_array(), *deny = json_array();
	bool allow_domain = false, deny_domain = false, allow_all = false, deny_all = false;

	*rules = NULL;
	if (network && !json_is_null(network) && !json_is_object(network)) {
		validate__fail(err, 400, "network must be an object");
		goto err;
	}
	if (validate__rule_list(network, "allowOut", true, allow, &allow_domain, &allow_all, err) ||
	    validate__rule_list(network, "denyOut", false, deny, &deny_domain, &deny_all, err))
		goto err;
	/* ARCHITECTURE.md: allow_internet_access=false equals denyOut=[ALL_TRAFFIC]. */
	if (!allow_internet_access && !deny_all) {
		json_array_append_new(deny, json_string(API_ALL_TRAFFIC));
		deny_all = true;
	}
	if (allow_domain && !deny_all) {
		validate__fail(err, 400, API_MSG_DOMAIN_NEEDS_ALL_TRAFFIC);
		goto err;
	}
	*rules = json_pack("{s:o, s:o}", "allowOut", allow, "denyOut", deny);
	return *rules ? 0 : validate__fail(err, 500, "out of memory");
err:
	json_decref(allow);
	json_decref(deny);
	return -1;
}

/* 400 when body carries a field warren does not implement with a value
 * that asks for something (not absent, null, {} or []). */
static int validate__unsupported(const json_t *body, const char *key, const char *what,
				 struct api_error *err)
{
	const json_t *value = json_object_get(body, key);

	if (!value || json_is_null(value) ||
	    (json_is_object(value) && json_object_size(value) == 0) ||
	    (json_is_array(value) && json_array_size(value) == 0))
		return 0;
	return validate__fail(err, 400, "%s is not supported by warren (%s)", key, what);
}

int validate__network_update(const json_t *body, json_t **rules, struct api_error *err)
{
	bool internet = true;

	*rules = NULL;
	if (!json_is_object(body))
		return validate__fail(err, 400, "malformed JSON body: expected a JSON object");
	if (validate__unsupported(body, "egressProxy", "no egress proxy chaining", err) ||
	    validate__unsupported(body, "rules", "no per-domain request transforms", err))
		return -1;
	/* The SDK sends snake_case here (as in the create body). */
	if (validate__bool(body, "allow_internet_access", true, &internet, err))
		return -1;
	return validate__network_rules(body, internet, rules, err);
}

void api_create_request__clear(struct api_create_request *request)
{
	json_decref(request->network);
	json_decref(request->metadata);
	json_decref(request->env_vars);
	memset(request, 0, sizeof(*request));
}

/* What a timeout does: E2B's autoPause (bool) and autoResume ({enabled}
 * or a bool), or the SDK's own spelling lifecycle {onTimeout: "pause" |
 * "kill" | {action}, autoResume}. autoResume needs pause on timeout. */
static int validate__lifecycle(const json_t *body, struct api_create_request *out,
			       struct api_error *err)
{
	const json_t *lifecycle = json_object_get(body, "lifecycle");
	const json_t *auto_resume = json_object_get(body, "autoResume");
	const json_t *on_timeout;

	if (validate__bool(body, "autoPause", false, &out->pause_on_timeout, err))
		return -1;
	if (json_is_object(auto_resume))
		auto_resume = json_object_get(auto_resume, "enabled");
	if (auto_resume && !json_is_null(auto_resume) && !json_is_boolean(auto_resume))
		return validate__fail(err, 400,
				      "autoResume must be a boolean or {enabled: boolean}");
	out->auto_resume = json_is_true(auto_resume);
	if (lifecycle && !json_is_null(lifecycle)) {
		if (!json_is_object(lifecycle))
			return validate__fail(err, 400, "lifecycle must be an object");
		on_timeout = json_object_get(lifecycle, "onTimeout");
		if (json_is_object(on_timeout))
			on_timeout = json_object_get(on_timeout, "action");
		if (on_timeout && !json_is_null(on_timeout)) {
			const char *action = json_string_value(on_timeout);

			if (!action || (strcmp(action, "pause") && strcmp(action, "kill")))
				return validate__fail(err, 400,
						      "lifecycle.onTimeout must be "
						      "one of: pause, kill");
			out->pause_on_timeout = !strcmp(action, "pause");
		}
		if (validate__bool(lifecycle, "autoResume", out->auto_resume, &out->auto_resume,
				   err))
			return -1;
	}
	if (out->auto_resume && !out->pause_on_timeout)
		return validate__fail(
		    err, 400, "autoResume can only be true when onTimeout action is 'pause'");
	return 0;
}

int validate__create(const json_t *body, int32_t max_timeout_s, struct api_create_request *out,
		     struct api_error *err)
{
	const json_t *template = json_object_get(body, "templateID");
	const json_t *timeout = json_object_get(body, "timeout");
	const json_t *network = json_object_get(body, "network");
	const json_t *mask;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(body)) {
		validate__fail(err, 400, "malformed JSON body: expected a JSON object");
		goto err;
	}
	if (!template || json_is_null(template)) {
		validate__fail(err, 400, "templateID is required");
		goto err;
	}
	if (!json_is_string(template) || json_string_length(template) == 0 ||
	    json_string_length(template) >= sizeof(out->template_id)) {
		validate__fail(err, 400,
			       "templateID must be a non-empty string of at most %zu characters",
			       sizeof(out->template_id) - 1);
		goto err;
	}
	snprintf(out->template_id, sizeof(out->template_id), "%s", json_string_value(template));

	/* timeout: seconds, > 0 and within the team's maximum; 15 when absent. */
	if (!timeout || json_is_null(timeout)) {
		out->timeout_s = API_TIMEOUT_DEFAULT_S;
	} else if (!json_is_integer(timeout)) {
		validate__fail(err, 400, "timeout must be an integer number of seconds");
		goto err;
	} else if (json_integer_value(timeout) <= 0) {
		validate__fail(err, 400, "timeout must be greater than 0 seconds");
		goto err;
	} else if (json_integer_value(timeout) > max_timeout_s) {
		if (max_timeout_s % 3600 == 0)
			validate__fail(err, 400, "Timeout cannot be greater than %d hours",
				       max_timeout_s / 3600);
		else
			validate__fail(err, 400, "Timeout cannot be greater than %d seconds",
				       max_timeout_s);
		goto err;
	} else {
		out->timeout_s = (int32_t)json_integer_value(timeout);
	}
	if (out->timeout_s > max_timeout_s)
		out->timeout_s = max_timeout_s; /* a team max below the 15 s default */

	/* Secure access (an envd token) is the default (docs/api.md); the e2b SDK
	 * 2.x does not send the field at all. secure=false is honoured. */
	if (validate__bool(body, "secure", true, &out->secure, err) ||
	    validate__bool(body, "allow_internet_access", true, &out->allow_internet_access, err) ||
	    validate__lifecycle(body, out, err))
		goto err;

	if (network && !json_is_null(network) && !json_is_object(network)) {
		validate__fail(err, 400, "network must be an object");
		goto err;
	}
	/* Asked-for features warren lacks are refused, never dropped. */
	if (validate__volume_mounts(json_object_get(body, "volumeMounts"), out->volume_mounts,
				    &out->volume_mount_count, err) ||
	    validate__unsupported(body, "mcp", "no MCP gateway", err) ||
	    validate__unsupported(body, "iam", "no workload identity tokens", err) ||
	    validate__unsupported(network, "rules", "no per-domain request transforms", err) ||
	    validate__unsupported(network, "egressProxy", "no egress proxy chaining", err))
		goto err;
	if (validate__bool(network, "allowPublicTraffic", true, &out->allow_public_traffic, err))
		goto err;
	if (!out->allow_public_traffic && !out->secure) {
		validate__fail(err, 400, "allowPublicTraffic=false requires secure=true");
		goto err;
	}
	mask = json_object_get(network, "maskRequestHost");
	if (mask && !json_is_null(mask)) {
		if (!json_is_string(mask) || json_string_length(mask) > API_MASK_REQUEST_HOST_MAX) {
			validate__fail(
			    err, 400,
			    "network.maskRequestHost must be a string of at most %d characters",
			    API_MASK_REQUEST_HOST_MAX);
			goto err;
		}
		snprintf(out->mask_request_host, sizeof(out->mask_request_host), "%s",
			 json_string_value(mask));
	}
	if (validate__network_rules(network, out->allow_internet_access, &out->network, err))
		goto err;
	json_object_set_new(out->network, "allowPublicTraffic",
			    json_boolean(out->allow_public_traffic));
	json_object_set_new(out->network, "allowInternetAccess",
			    json_boolean(out->allow_internet_access));
	if (out->mask_request_host[0])
		json_object_set_new(out->network, "maskRequestHost",
				    json_string(out->mask_request_host));

	if (validate__string_map(body, "metadata", API_METADATA_ENTRIES_MAX, &out->metadata, err) ||
	    validate__string_map(body, "envVars", API_ENV_VARS_MAX, &out->env_vars, err))
		goto err;
	/* Placement (docs/api.md, "Placement"): the one metadata key warren
	 * reads; the SDK has no other field to carry it. */
	const char *runtime =
	    json_string_value(json_object_get(out->metadata, API_METADATA_RUNTIME));
	if (runtime && strcmp(runtime, "vm") && strcmp(runtime, "jail")) {
		validate__fail(err, 400,
			       "metadata " API_METADATA_RUNTIME " must be \"vm\" or \"jail\"");
		goto err;
	}
	snprintf(out->runtime, sizeof(out->runtime), "%s", runtime ? runtime : "");
	if (out->volume_mount_count && !strcmp(out->runtime, "vm")) {
		validate__fail(err, 400, "volumeMounts need the jail runtime (docs/volumes.md)");
		goto err;
	}
	return 0;
err:
	api_create_request__clear(out);
	return -1;
}

int validate__seconds_field(const json_t *body, const char *field, int32_t fallback_s,
			    int32_t max_s, int32_t *out, struct api_error *err)
{
	const json_t *value = json_object_get(body, field);

	if (!value || json_is_null(value)) {
		if (fallback_s <= 0)
			return validate__fail(err, 400, "%s is required", field);
		*out = fallback_s < max_s ? fallback_s : max_s;
		return 0;
	}
	if (!json_is_integer(value))
		return validate__fail(err, 400, "%s must be an integer number of seconds", field);
	if (json_integer_value(value) <= 0)
		return validate__fail(err, 400, "%s must be greater than 0 seconds", field);
	*out = json_integer_value(value) > max_s ? max_s : (int32_t)json_integer_value(value);
	return 0;
}
