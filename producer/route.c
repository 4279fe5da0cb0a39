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
	{ "", "GET", API_ROUTE_GET },
	{ "", "DELETE", API_ROUTE_KILL },
	{ "/timeout", "POST", API_ROUTE_TIMEOUT },
	{ "/refreshes", "POST", API_ROUTE_REFRESH },
	{ "/pause", "POST", API_ROUTE_PAUSE },
	{ "/network", "PUT", API_ROUTE_NETWORK },
	{ "/connect", "POST", API_ROUTE_CONNECT },
};

static void route__method(const char *method, const char *want, enum api_endpoint endpoint,
			  const char *allowed, struct api_route *out)
{
	out->endpoint = !strcmp(method, want) ? endpoint : API_ROUTE_BAD_METHOD;
	out->allowed_methods = allowed;
}

void route__match(const char *method, const char *path, struct api_route *out)
{
	char clean[256];
	size_t len = path ? strlen(path) : 0;
	const char *rest, *slash;
	size_t id_len;

	memset(out, 0, sizeof(*out));
	out->endpoint = API_ROUTE_NOT_FOUND;
	if (!method || !path || len == 0 || len >= sizeof(clean))
		return;
	memcpy(clean, path, len + 1);
	if (len > 1 && clean[len - 1] == '/')
		clean[--len] = '\0';

	if (templates_route__match(method, clean, out))
		return;
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
		/* Only connect lives under /v2/sandboxes/{id}. */
		slash = strchr(clean + 14, '/');
		if (!slash || slash == clean + 14 || strcmp(slash, "/connect"))
			return;
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
			return;
		}
		out->endpoint = API_ROUTE_BAD_METHOD;
	}
	if (out->endpoint == API_ROUTE_NOT_FOUND)
		out->sandbox_id[0] = '\0';
}

bool route__is_lifecycle(enum api_endpoint endpoint)
{
	return endpoint >= API_ROUTE_CREATE && endpoint <= API_ROUTE_CONNECT;
}

const char *route__name(enum api_endpoint endpoint)
{
	switch (endpoint) {
	case API_ROUTE_HEALTH: return "health";
	case API_ROUTE_CREATE: return "create";
	case API_ROUTE_LIST_V1: return "list";
	case API_ROUTE_LIST_V2: return "list_v2";
	case API_ROUTE_GET: return "get";
	case API_ROUTE_KILL: return "kill";
	case API_ROUTE_TIMEOUT: return "timeout";
	case API_ROUTE_REFRESH: return "refresh";
	case API_ROUTE_PAUSE: return "pause";
	case API_ROUTE_NETWORK: return "network";
	case API_ROUTE_CONNECT: return "connect";
	case API_ROUTE_TEMPLATE_CREATE: return "template_create";
	case API_ROUTE_TEMPLATE_LIST: return "template_list";
	case API_ROUTE_TEMPLATE_GET: return "template_get";
	case API_ROUTE_TEMPLATE_DELETE: return "template_delete";
	case API_ROUTE_TEMPLATE_ALIAS: return "template_alias";
	case API_ROUTE_TEMPLATE_FILE: return "template_file";
	case API_ROUTE_TEMPLATE_UPLOAD: return "template_upload";
	case API_ROUTE_TEMPLATE_BUILD: return "template_build";
	case API_ROUTE_TEMPLATE_BUILD_STATUS: return "template_build_status";
	case API_ROUTE_TEMPLATE_BUILD_LOGS: return "template_build_logs";
	case API_ROUTE_BAD_METHOD: return "bad_method";
	case API_ROUTE_NOT_FOUND: break;
	}
	return "not_found";
}
