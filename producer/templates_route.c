/* templates_route: the template paths of the REST API (docs/api.md,
 * "Templates"; the npm e2b SDK's Template builder calls them). Pure. */
#include <stdio.h>
#include <string.h>

#include "route.h"

/* Splits path (after the prefix) into at most max segments (cut at
 * API_ROUTE_ID_MAX). Returns the count, or -1 for an empty segment or too
 * many. */
static int split(const char *path, char seg[][API_ROUTE_ID_MAX + 1], int max)
{
	int n = 0;

	while (*path) {
		const char *slash = strchr(path, '/');
		size_t len = slash ? (size_t)(slash - path) : strlen(path);

		if (len == 0 || n == max)
			return -1;
		snprintf(seg[n++], API_ROUTE_ID_MAX + 1, "%.*s",
			 (int)(len > API_ROUTE_ID_MAX ? API_ROUTE_ID_MAX : len), path);
		path += len;
		if (*path == '/')
			path++;
	}
	return n;
}

static void set(struct api_route *out, const char *method, const char *want,
		enum api_endpoint endpoint, const char *allowed)
{
	out->allowed_methods = allowed;
	out->endpoint = !strcmp(method, want) ? endpoint : API_ROUTE_BAD_METHOD;
}

bool templates_route__match(const char *method, const char *path, struct api_route *out)
{
	char seg[5][API_ROUTE_ID_MAX + 1];
	int n;

	if (!strcmp(path, "/v3/templates")) {
		set(out, method, "POST", API_ROUTE_TEMPLATE_CREATE, "POST");
		return true;
	}
	if (!strcmp(path, "/templates")) {
		set(out, method, "GET", API_ROUTE_TEMPLATE_LIST, "GET");
		return true;
	}
	if (!strncmp(path, "/v2/templates/", 14)) {
		n = split(path + 14, seg, 3);
		if (n != 3 || strcmp(seg[1], "builds"))
			return false;
		snprintf(out->template_id, sizeof(out->template_id), "%s", seg[0]);
		snprintf(out->build_id, sizeof(out->build_id), "%s", seg[2]);
		set(out, method, "POST", API_ROUTE_TEMPLATE_BUILD, "POST");
		return true;
	}
	if (strncmp(path, "/templates/", 11))
		return false;
	n = split(path + 11, seg, 5);
	if (n < 1)
		return false;
	snprintf(out->template_id, sizeof(out->template_id), "%s", seg[0]);
	if (n == 1) {
		out->allowed_methods = "GET, DELETE";
		out->endpoint = !strcmp(method, "GET")	    ? API_ROUTE_TEMPLATE_GET
				: !strcmp(method, "DELETE") ? API_ROUTE_TEMPLATE_DELETE
							    : API_ROUTE_BAD_METHOD;
		return true;
	}
	if (n == 2 && !strcmp(seg[0], "aliases")) {
		snprintf(out->template_id, sizeof(out->template_id), "%s", seg[1]);
		set(out, method, "GET", API_ROUTE_TEMPLATE_ALIAS, "GET");
		return true;
	}
	if ((n == 3 || n == 4) && !strcmp(seg[1], "files")) {
		snprintf(out->file_hash, sizeof(out->file_hash), "%s", seg[2]);
		if (n == 3)
			set(out, method, "GET", API_ROUTE_TEMPLATE_FILE, "GET");
		else if (!strcmp(seg[3], "upload"))
			set(out, method, "PUT", API_ROUTE_TEMPLATE_UPLOAD, "PUT");
		else
			return false;
		return true;
	}
	if (n == 4 && !strcmp(seg[1], "builds")) {
		snprintf(out->build_id, sizeof(out->build_id), "%s", seg[2]);
		if (!strcmp(seg[3], "status"))
			set(out, method, "GET", API_ROUTE_TEMPLATE_BUILD_STATUS, "GET");
		else if (!strcmp(seg[3], "logs"))
			set(out, method, "GET", API_ROUTE_TEMPLATE_BUILD_LOGS, "GET");
		else
			return false;
		return true;
	}
	return false;
}
