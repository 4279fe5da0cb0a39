/* route: the path table of docs/api.md. */
#include <stdio.h>
#include <string.h>

#include "route.h"

struct route_action {
	const char *suffix; /* after /sandboxes/{id}; "" for the sandbox itself */
	const char *method;
	enum api_endpoint endpoint;
};

static const struct route_action route_actions[] = {
    {"", "GET", API_ROUTE_GET},
    {"", "DELETE", API_ROUTE_KILL},
    {"/timeout", "POST", API_ROUTE_TIMEOUT},
    {"/refreshes", "POST", API_ROUTE_REFRESH},
    {"/pause", "POST", API_ROUTE_PAUSE},
    {"/resume", "POST", API_ROUTE_RESUME},
    {"/network", "PUT", API_ROUTE_NETWORK},
    {"/connect", "POST", API_ROUTE_CONNECT},
    {"/metrics", "GET", API_ROUTE_METRICS},
    {"/logs", "GET", API_ROUTE_LOGS},
    {"/snapshots", "POST", API_ROUTE_SNAPSHOT_CREATE},
    {"/fork", "POST", API_ROUTE_FORK},
};

/* Routes of the E2B API (as the npm e2b SDK 2.x calls them) that warren
 * does not implement: they answer 501 naming the feature, never a 404 the
 * SDK would read as "sandbox not found". '*' is one path segment. */
struct route_unimplemented {
	const char *pattern;
	const char *methods; /* ", "-separated */
	const char *feature;
};

static const struct route_unimplemented route_unimplemented[] = {
    {"/secrets", "GET, POST", "secrets"},
    {"/secrets/*", "GET, POST, DELETE", "secrets"},
    {"/teams", "GET", "the teams API"},
    {"/teams/*/metrics", "GET", "team metrics"},
    {"/teams/*/metrics/max", "GET", "team metrics"},
    {"/templates/tags", "POST, DELETE", "template tags"},
    {"/templates/*", "PATCH", "updating a template (publish state)"},
    {"/templates/*/tags", "GET", "template tags"},
    {"/v2/templates", "GET", "the v2 template list (use GET /templates)"},
    {"/v2/templates/*", "PATCH", "updating a template (publish state)"},
    {"/volumecontent/*/dir", "GET, POST",
     "the volume content API (read and write a volume's files from a sandbox that mounts it)"},
    {"/volumecontent/*/path", "GET, PATCH, DELETE",
     "the volume content API (read and write a volume's files from a sandbox that mounts it)"},
    {"/volumecontent/*/file", "GET, PUT",
     "the volume content API (read and write a volume's files from a sandbox that mounts it)"},
};

/* True when path matches pattern segment by segment ('*' = one non-empty
 * segment). Pure. */
static bool route__pattern_matches(const char *pattern, const char *path)
{
	while (*pattern && *path) {
		if (*pattern == '*') {
			const char *end = strchr(path, '/');
			size_t len = end ? (size_t)(end - path) : strlen(path);

			if (len == 0)
				return false;
			pattern++;
			path += len;
			continue;
		}
		if (*pattern != *path)
			return false;
		pattern++;
		path++;
	}
	return !*pattern && !*path;
}

/* True when method is one of the ", "-separated names of list. Pure. */
static bool route__method_listed(const char *list, const char *method)
{
	size_t len = strlen(method);

	while (list && *list) {
		if (!strncmp(list, method, len) && (list[len] == ',' || list[len] == '\0'))
			return true;
		list = strchr(list, ',');
		if (list)
			list += 2;
	}
	return false;
}

/* Looks clean up in route_unimplemented: 501 for a listed method, 405 for
 * another method of a listed path. false when the path is not there. */
static bool route__unimplemented(const char *method, const char *clean, bool listed_only,
				 struct api_route *out)
{
	const struct route_unimplemented *first = NULL;

	for (size_t i = 0; i < sizeof(route_unimplemented) / sizeof(route_unimplemented[0]); i++) {
		const struct route_unimplemented *entry = &route_unimplemented[i];

		if (!route__pattern_matches(entry->pattern, clean))
			continue;
		if (route__method_listed(entry->methods, method)) {
			out->endpoint = API_ROUTE_UNIMPLEMENTED;
			out->feature = entry->feature;
			out->allowed_methods = entry->methods;
			out->sandbox_id[0] = '\0';
			return true;
		}
		if (!first)
			first = entry;
	}
	if (!first || listed_only)
		return false;
	out->endpoint = API_ROUTE_BAD_METHOD;
	out->allowed_methods = first->methods;
	out->sandbox_id[0] = '\0';
	return true;
}

static void route__method(const char *method, const char *want, enum api_endpoint endpoint,
			  const char *allowed, struct api_route *out)
{
	out->endpoint = !strcmp(method, want) ? endpoint : API_ROUTE_BAD_METHOD;
	out->allowed_methods = allowed;
}

bool route__volumes(const char *method, const char *path, struct api_route *out)
{
	const char *id;
	size_t len;

	if (!strcmp(path, "/volumes")) {
		out->allowed_methods = "GET, POST";
		out->endpoint = !strcmp(method, "GET")	  ? API_ROUTE_VOLUME_LIST
				: !strcmp(method, "POST") ? API_ROUTE_VOLUME_CREATE
							  : API_ROUTE_BAD_METHOD;
		return true;
	}
	if (strncmp(path, "/volumes/", 9))
		return false;
	id = path + 9;
	len = strlen(id);
	if (len == 0 || strchr(id, '/'))
		return false;
	snprintf(out->volume_id, sizeof(out->volume_id), "%.*s",
		 (int)(len > API_ROUTE_ID_MAX ? API_ROUTE_ID_MAX : len), id);
	out->allowed_methods = "GET, DELETE";
	out->endpoint = !strcmp(method, "GET")	    ? API_ROUTE_VOLUME_GET
			: !strcmp(method, "DELETE") ? API_ROUTE_VOLUME_DELETE
						    : API_ROUTE_BAD_METHOD;
	return true;
}

void route__match(const char *method, const char *path, struct api_route *out)
{
	char clean[256];
	size_t len = path ? strlen(path) : 0;
	const char *rest, *slash;
	bool v2 = false;
	size_t id_len;

	memset(out, 0, sizeof(*out));
	out->endpoint = API_ROUTE_NOT_FOUND;
	if (!method || !path || len == 0 || len >= sizeof(clean))
		return;
	memcpy(clean, path, len + 1);
	if (len > 1 && clean[len - 1] == '/')
		clean[--len] = '\0';

	/* 501 for a method warren lacks on a path it may know (PATCH
	 * /templates/{id}), then the template routes, then 501/405 */
	if (route__unimplemented(method, clean, true, out) ||
	    templates_route__match(method, clean, out) || route__volumes(method, clean, out) ||
	    route__unimplemented(method, clean, false, out))
		return;
	if (!strcmp(clean, "/sandboxes/metrics")) {
		route__method(method, "GET", API_ROUTE_METRICS_LIST, "GET", out);
		return;
	}
	if (!strcmp(clean, "/snapshots")) {
		route__method(method, "GET", API_ROUTE_SNAPSHOT_LIST, "GET", out);
		return;
	}
	if (!strcmp(clean, "/health")) {
		route__method(method, "GET", API_ROUTE_HEALTH, "GET", out);
		return;
	}
	if (!strcmp(clean, "/sandboxes")) {
		out->allowed_methods = "GET, POST";
		if (!strcmp(method, "GET"))
			out->endpoint = API_ROUTE_LIST_V1;
		else if (!strcmp(method, "POST"))
			out->endpoint = API_ROUTE_CREATE;
		else
			out->endpoint = API_ROUTE_BAD_METHOD;
		return;
	}
	if (!strcmp(clean, "/v2/sandboxes")) {
		/* e2b SDK 2.x creates with POST /v2/sandboxes (same body). */
		out->allowed_methods = "GET, POST";
		if (!strcmp(method, "GET"))
			out->endpoint = API_ROUTE_LIST_V2;
		else if (!strcmp(method, "POST"))
			out->endpoint = API_ROUTE_CREATE;
		else
			out->endpoint = API_ROUTE_BAD_METHOD;
		return;
	}
	if (!strncmp(clean, "/v2/sandboxes/", 14)) {
		/* Only connect and logs live under /v2/sandboxes/{id}. */
		slash = strchr(clean + 14, '/');
		if (!slash || slash == clean + 14 ||
		    (strcmp(slash, "/connect") && strcmp(slash, "/logs")))
			return;
		v2 = true;
		rest = clean + 14;
	} else if (!strncmp(clean, "/sandboxes/", 11)) {
		rest = clean + 11;
	} else {
		return;
	}
	slash = strchr(rest, '/');
	id_len = slash ? (size_t)(slash - rest) : strlen(rest);
	if (id_len == 0)
		return;
	snprintf(out->sandbox_id, sizeof(out->sandbox_id), "%.*s",
		 (int)(id_len > API_ROUTE_ID_MAX ? API_ROUTE_ID_MAX : id_len), rest);
	rest += id_len;
	for (size_t i = 0; i < sizeof(route_actions) / sizeof(route_actions[0]); i++) {
		if (strcmp(route_actions[i].suffix, rest))
			continue;
		out->allowed_methods = *rest ? route_actions[i].method : "GET, DELETE";
		if (!strcmp(route_actions[i].method, method)) {
			out->endpoint = route_actions[i].endpoint;
			if (v2 && out->endpoint == API_ROUTE_LOGS)
				out->endpoint = API_ROUTE_LOGS_V2;
			return;
		}
		out->endpoint = API_ROUTE_BAD_METHOD;
	}
	if (out->endpoint == API_ROUTE_NOT_FOUND)
		out->sandbox_id[0] = '\0';
}

bool route__is_lifecycle(enum api_endpoint endpoint)
{
	return endpoint >= API_ROUTE_CREATE && endpoint <= API_ROUTE_FORK;
}

const char *route__name(enum api_endpoint endpoint)
{
	switch (endpoint) {
	case API_ROUTE_HEALTH:
		return "health";
	case API_ROUTE_CREATE:
		return "create";
	case API_ROUTE_LIST_V1:
		return "list";
	case API_ROUTE_LIST_V2:
		return "list_v2";
	case API_ROUTE_GET:
		return "get";
	case API_ROUTE_KILL:
		return "kill";
	case API_ROUTE_TIMEOUT:
		return "timeout";
	case API_ROUTE_REFRESH:
		return "refresh";
	case API_ROUTE_PAUSE:
		return "pause";
	case API_ROUTE_RESUME:
		return "resume";
	case API_ROUTE_NETWORK:
		return "network";
	case API_ROUTE_CONNECT:
		return "connect";
	case API_ROUTE_FORK:
		return "fork";
	case API_ROUTE_METRICS:
		return "metrics";
	case API_ROUTE_METRICS_LIST:
		return "metrics_list";
	case API_ROUTE_LOGS:
		return "logs";
	case API_ROUTE_LOGS_V2:
		return "logs_v2";
	case API_ROUTE_UNIMPLEMENTED:
		return "unimplemented";
	case API_ROUTE_TEMPLATE_CREATE:
		return "template_create";
	case API_ROUTE_TEMPLATE_LIST:
		return "template_list";
	case API_ROUTE_TEMPLATE_GET:
		return "template_get";
	case API_ROUTE_TEMPLATE_DELETE:
		return "template_delete";
	case API_ROUTE_TEMPLATE_ALIAS:
		return "template_alias";
	case API_ROUTE_TEMPLATE_FILE:
		return "template_file";
	case API_ROUTE_TEMPLATE_UPLOAD:
		return "template_upload";
	case API_ROUTE_TEMPLATE_BUILD:
		return "template_build";
	case API_ROUTE_TEMPLATE_BUILD_STATUS:
		return "template_build_status";
	case API_ROUTE_TEMPLATE_BUILD_LOGS:
		return "template_build_logs";
	case API_ROUTE_VOLUME_CREATE:
		return "volume_create";
	case API_ROUTE_VOLUME_LIST:
		return "volume_list";
	case API_ROUTE_VOLUME_GET:
		return "volume_get";
	case API_ROUTE_VOLUME_DELETE:
		return "volume_delete";
	case API_ROUTE_SNAPSHOT_CREATE:
		return "snapshot_create";
	case API_ROUTE_SNAPSHOT_LIST:
		return "snapshot_list";
	case API_ROUTE_BAD_METHOD:
		return "bad_method";
	case API_ROUTE_NOT_FOUND:
		break;
	}
	return "not_found";
}
