/* render: response bodies (docs/e2b-compatibility.md, "REST API"). */
#include <string.h>

#include "render.h"
#include "warren/clock.h"
#include "warren/tokens.h"

json_t *render__error(int code, const char *message)
{
	return json_pack("{s:i, s:s}", "code", code, "message", message ? message : "");
}

static json_t *render__nullable(const char *text)
{
	return text && *text ? json_string(text) : json_null();
}

static json_t *render__time(int64_t ms)
{
	char text[32];

	if (ms < 0)
		return json_null();
	clock__format_rfc3339(ms, text);
	return json_string(text);
}

const char *render__state(enum storage_sandbox_state state)
{
	return storage__sandbox_state_name(state);
}

json_t *render__created(const struct render_context *context, const struct storage_sandbox *sandbox,
			const char *client_id)
{
	char access[TOKENS_SHA256_HEX_LEN + 1], traffic[TOKENS_SHA256_HEX_LEN + 1];
	json_t *body;

	tokens__access_token(context->token_seed, sandbox->id, access);
	tokens__traffic_token(context->token_seed, sandbox->id, traffic);
	body = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "templateID",
			 sandbox->template_id, "sandboxID", sandbox->id, "alias",
			 sandbox->template_id, "clientID",
			 client_id && *client_id ? client_id : sandbox->host_id, "envdVersion",
			 context->envd_version ? context->envd_version : "", "envdAccessToken",
			 sandbox->secure ? json_string(access) : json_null(), "trafficAccessToken",
			 sandbox->allow_public_traffic ? json_null() : json_string(traffic),
			 "domain", render__nullable(context->domain));
	memset(access, 0, sizeof(access));
	memset(traffic, 0, sizeof(traffic));
	return body;
}

json_t *render__listed(const struct render_context *context, const struct storage_sandbox *sandbox)
{
	json_t *metadata = sandbox->metadata ? json_incref(sandbox->metadata) : json_object();

	return json_pack(
	    "{s:s, s:s, s:s, s:s, s:o, s:o, s:i, s:i, s:i, s:o, s:s, s:s}", "sandboxID",
	    sandbox->id, "templateID", sandbox->template_id, "alias", sandbox->template_id,
	    "clientID", sandbox->host_id, "startedAt",
	    render__time(sandbox->started_at >= 0 ? sandbox->started_at : sandbox->created_at),
	    "endAt", render__time(sandbox->end_at), "cpuCount", context->cpu_count, "memoryMB",
	    context->memory_mb, "diskSizeMB", context->disk_mb, "metadata", metadata, "state",
	    render__state(sandbox->state), "envdVersion",
	    context->envd_version ? context->envd_version : "");
}

json_t *render__detail(const struct render_context *context, const struct storage_sandbox *sandbox)
{
	char access[TOKENS_SHA256_HEX_LEN + 1];
	json_t *body = render__listed(context, sandbox);

	if (!body)
		return NULL;
	tokens__access_token(context->token_seed, sandbox->id, access);
	json_object_set_new(body, "envdAccessToken",
			    sandbox->secure ? json_string(access) : json_null());
	json_object_set_new(body, "domain", render__nullable(context->domain));
	json_object_set_new(
	    body, "allowInternetAccess",
	    json_boolean(!sandbox->network ||
			 json_is_true(json_object_get(sandbox->network, "allowInternetAccess")) ||
			 !json_object_get(sandbox->network, "allowInternetAccess")));
	if (sandbox->network)
		json_object_set(body, "network", sandbox->network);
	json_object_set_new(body, "lifecycle",
			    json_pack("{s:s, s:b}", "onTimeout",
				      sandbox->pause_on_timeout ? "pause" : "kill", "autoResume",
				      sandbox->auto_resume));
	memset(access, 0, sizeof(access));
	return body;
}

json_t *render__metric(const struct storage_sandbox_metric *metric)
{
	return json_pack(
	    "{s:o, s:I, s:i, s:f, s:I, s:I, s:I, s:I, s:I}", "timestamp", render__time(metric->at),
	    "timestampUnix", (json_int_t)(metric->at / 1000), "cpuCount", (int)metric->cpu_count,
	    "cpuUsedPct", (double)((int64_t)(metric->cpu_used_pct * 100 + 0.5)) / 100.0, "memUsed",
	    (json_int_t)metric->mem_used, "memTotal", (json_int_t)metric->mem_total, "memCache",
	    (json_int_t)metric->mem_cache, "diskUsed", (json_int_t)metric->disk_used, "diskTotal",
	    (json_int_t)metric->disk_total);
}

json_t *render__log_entry(const struct storage_log_line *line)
{
	return json_pack("{s:o, s:s, s:s, s:{s:s}}", "timestamp", render__time(line->at), "level",
			 line->level, "message", line->message ? line->message : "", "fields",
			 "source", line->source);
}

json_t *render__log_line(const struct storage_log_line *line)
{
	return json_pack("{s:o, s:s}", "timestamp", render__time(line->at), "line",
			 line->message ? line->message : "");
}
