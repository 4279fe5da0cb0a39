/* templates_api: the template endpoints the npm e2b SDK's Template
 * builder calls (docs/templates.md, docs/api.md "Templates"): create a
 * template + build, the file-upload handshake of copy() (uploads kept by
 * content hash per team under the setting template_uploads_dir), start a
 * build (validated, stored, produced to warren.template.builds), its
 * status and logs, list/get/delete, aliases. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "request.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/dirs.h"
#include "warren/ids.h"
#include "warren/kafka.h"
#include "warren/log.h"
#include "warren/template_builds.h"
#include "warren/template_steps.h"
#include "warren/templates.h"
#include "warren/tokens.h"

#define TEMPLATE_BUILDS_TOPIC "warren.template.builds"

static const char *uploads_dir(void)
{
	return config__get("template_uploads_dir", "/var/lib/warren/template-uploads");
}

static bool is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* <uploads>/<team>/<hash>.tar into out; false when too long. */
static bool upload_path(const char *team_id, const char *hash, char *out, size_t len)
{
	return (size_t)snprintf(out, len, "%s/%s/%s.tar", uploads_dir(), team_id, hash) < len;
}

/* The signature that authorises the PUT of one file of one team. */
static void upload_signature(const struct api_request *r, const char *team_id, const char *hash,
			     char out[TOKENS_SHA256_HEX_LEN + 1])
{
	char message[160];

	snprintf(message, sizeof(message), "template-upload:%s:%s", team_id, hash);
	tokens__hmac_sha256_hex(r->config->token_seed, message, out);
}

static enum MHD_Result not_found(struct api_request *r, const char *id)
{
	return request__error(r, 404, "template '%.64s' not found", id);
}

/* True when the team owns template_id; else an answer is queued in *ret. */
static bool team_owns(struct api_request *r, struct storage_pool *pool, const char *template_id,
		      enum MHD_Result *ret)
{
	struct storage_error e;
	bool exists = false, owned = false;

	if (storage__template_alias_lookup(pool, r->team.id, template_id, &exists, &owned, &e)) {
		*ret = request__storage_error(r, &e);
		return false;
	}
	if (!owned) {
		*ret = not_found(r, template_id);
		return false;
	}
	return true;
}

/* A new template name counts against the setting team_template_max
 * (100); a rebuild of one of the team's own does not. True when within;
 * else the answer (403) is queued in *ret. */
static bool template_quota_ok(struct api_request *r, struct storage_pool *pool, const char *name,
			      enum MHD_Result *ret)
{
	int64_t max = config__get_int("team_template_max", 100), count = 0;
	bool exists = false, owned = false;
	struct storage_error e;

	if (storage__template_alias_lookup(pool, r->team.id, name, &exists, &owned, &e) ||
	    storage__team_template_count(pool, r->team.id, &count, &e)) {
		*ret = request__storage_error(r, &e);
		return false;
	}
	if (owned || count < max)
		return true;
	*ret = request__error(r, 403, "you have reached the maximum number of templates (%lld)",
			      (long long)max);
	return false;
}

/* POST /v3/templates {name | alias, tags, cpuCount, memoryMB}. */
static enum MHD_Result templates_api__create(struct api_request *r, struct storage_pool *pool)
{
	json_error_t jerr;
	json_t *body = json_loadb(r->body ? r->body : "{}", r->body ? r->body_len : 2, 0, &jerr);
	const json_t *name_v, *cpu_v, *mem_v;
	char name[TEMPLATES_NAME_MAX + 1], build_id[IDS_UUID_LEN + 1], *colon;
	int64_t cpu = r->config->cpu_count, memory = r->config->memory_mb;
	struct storage_error e;
	enum MHD_Result ret;
	int rc;

	if (!json_is_object(body)) {
		ret = request__error(r, 400, "the body must be a JSON object");
		goto out;
	}
	name_v = json_object_get(body, "name");
	if (!json_is_string(name_v))
		name_v = json_object_get(body, "alias");
	if (!json_is_string(name_v) || json_string_length(name_v) > TEMPLATES_NAME_MAX + 64) {
		ret = request__error(r, 400, "name is required (a string)");
		goto out;
	}
	snprintf(name, sizeof(name), "%s", json_string_value(name_v));
	if ((colon = strchr(name, ':')))
		*colon = '\0'; /* "name:tag": tags are not kept (docs/templates.md) */
	if (!templates__name_valid(name) || json_string_length(name_v) > TEMPLATES_NAME_MAX) {
		ret = request__error(r, 400,
				     "name must be 1..63 characters of a-z, 0-9, '-' and '_' "
				     "(not starting with '-')");
		goto out;
	}
	cpu_v = json_object_get(body, "cpuCount");
	mem_v = json_object_get(body, "memoryMB");
	if ((cpu_v && !json_is_null(cpu_v) && !json_is_integer(cpu_v)) ||
	    (mem_v && !json_is_null(mem_v) && !json_is_integer(mem_v))) {
		ret = request__error(r, 400, "cpuCount and memoryMB must be integers");
		goto out;
	}
	if (json_is_integer(cpu_v))
		cpu = json_integer_value(cpu_v);
	if (json_is_integer(mem_v))
		memory = json_integer_value(mem_v);
	if (cpu < 1 || cpu > TEMPLATES_CPU_MAX || memory < TEMPLATES_MEMORY_MIN_MB ||
	    memory > TEMPLATES_MEMORY_MAX_MB) {
		ret = request__error(r, 400, "cpuCount must be in [1, %d] and memoryMB in [%d, %d]",
				     TEMPLATES_CPU_MAX, TEMPLATES_MEMORY_MIN_MB,
				     TEMPLATES_MEMORY_MAX_MB);
		goto out;
	}
	if (ids__uuid(build_id)) {
		ret = request__error(r, 500, "internal error");
		goto out;
	}
	if (!template_quota_ok(r, pool, name, &ret))
		goto out;
	rc = storage__template_build_create(pool, r->team.id, name, build_id, (int32_t)cpu,
					    (int32_t)memory, &e);
	if (rc == STORAGE_ERR_CONFLICT) {
		ret = request__error(r, 409, "template name '%s' is already taken", name);
		goto out;
	}
	if (rc) {
		ret = request__storage_error(r, &e);
		goto out;
	}
	log_info("req=%s team=%s template %s: build %s requested", r->request_id, r->team.id, name,
		 build_id);
	ret = request__json(r, 202,
			    json_pack("{s:s, s:s, s:[s], s:[s], s:[], s:b}", "templateID", name,
				      "buildID", build_id, "aliases", name, "names", name, "tags",
				      "public", 0),
			    NULL);
out:
	json_decref(body);
	return ret;
}

/* GET /templates/{id}/files/{hash}: present, or where to PUT it. */
static enum MHD_Result templates_api__file(struct api_request *r, struct storage_pool *pool)
{
	char path[PATH_MAX], sig[TOKENS_SHA256_HEX_LEN + 1], url[1024];
	const char *host = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, "Host");
	const char *base = config__get("api_public_url", NULL);
	enum MHD_Result ret;

	if (!team_owns(r, pool, r->route.template_id, &ret))
		return ret;
	if (!is_hex64(r->route.file_hash))
		return request__error(r, 400, "hash must be 64 lower-case hex digits");
	if (!upload_path(r->team.id, r->route.file_hash, path, sizeof(path)))
		return request__error(r, 500, "internal error");
	if (access(path, R_OK) == 0)
		return request__json(r, 201, json_pack("{s:b}", "present", 1), NULL);
	if (!base && (!host || strpbrk(host, " /\\\"'<>")))
		return request__error(r, 400, "a Host header is required");
	upload_signature(r, r->team.id, r->route.file_hash, sig);
	snprintf(url, sizeof(url), "%s%s%s/templates/%s/files/%s/upload?team=%s&signature=%s",
		 base					  ? ""
		 : config__get("api_tls_cert_file", NULL) ? "https://"
							  : "http://",
		 base ? base : host, "", r->route.template_id, r->route.file_hash, r->team.id, sig);
	return request__json(r, 201, json_pack("{s:b, s:s}", "present", 0, "url", url), NULL);
}

/* An upload refused while its body streams in: answered at its end
 * (libmicrohttpd queues a response only between uploads' chunks). */
static void upload__refuse(struct api_request *r, int status, const char *message)
{
	if (r->upload_refused)
		return;
	r->upload_refused = true;
	r->upload_status = status;
	snprintf(r->upload_message, sizeof(r->upload_message), "%s", message);
}

/* Checks the signed URL of a PUT: 0, or -1 (refused). */
static int upload__authorise(struct api_request *r)
{
	const char *team = request__query(r, "team"), *sig = request__query(r, "signature");
	char want[TOKENS_SHA256_HEX_LEN + 1];

	if (!team || !sig || !ids__is_uuid(team) || !is_hex64(r->route.file_hash)) {
		upload__refuse(r, 403, "upload URL is not valid");
		return -1;
	}
	upload_signature(r, team, r->route.file_hash, want);
	if (!tokens__equal(want, sig)) {
		upload__refuse(r, 403, "upload URL is not valid");
		return -1;
	}
	snprintf(r->team.id, sizeof(r->team.id), "%s", team);
	return 0;
}

int templates_api__upload_chunk(struct api_request *r, const char *data, size_t len)
{
	uint64_t max = (uint64_t)config__get_int("template_upload_max_bytes", 1LL << 30);
	char dir[PATH_MAX];

	if (r->upload_refused)
		return 0; /* the rest is discarded */
	if (r->upload_fd <= 0) {
		if (upload__authorise(r))
			return 0;
		snprintf(dir, sizeof(dir), "%s/%s", uploads_dir(), r->team.id);
		if (dirs__make(dir, 0700) ||
		    (size_t)snprintf(r->upload_tmp, sizeof(r->upload_tmp), "%s/.%s.%s.part", dir,
				     r->route.file_hash, r->request_id) >= sizeof(r->upload_tmp) ||
		    (r->upload_fd =
			 open(r->upload_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
			log_error("template upload: cannot write under %s: %s", dir,
				  strerror(errno));
			r->upload_fd = 0;
			upload__refuse(r, 500, "cannot store the upload");
			return 0;
		}
	}
	r->upload_len += len;
	if (r->upload_len > max) {
		upload__refuse(r, 413, "upload is larger than template_upload_max_bytes");
		return 0;
	}
	while (len) {
		ssize_t n = write(r->upload_fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			upload__refuse(r, 507, "cannot store the upload (disk full?)");
			return 0;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

enum MHD_Result templates_api__upload_finish(struct api_request *r)
{
	char final[PATH_MAX];

	if (r->phase == API_PHASE_ANSWERED)
		return MHD_YES;
	if (r->upload_fd <= 0 && !r->upload_refused)
		templates_api__upload_chunk(r, "", 0); /* an empty body */
	if (r->upload_refused)
		return request__error(r, r->upload_status, "%s", r->upload_message);
	if (fsync(r->upload_fd) || close(r->upload_fd)) {
		r->upload_fd = 0;
		return request__error(r, 507, "cannot store the upload");
	}
	r->upload_fd = 0;
	if (!upload_path(r->team.id, r->route.file_hash, final, sizeof(final)) ||
	    rename(r->upload_tmp, final))
		return request__error(r, 500, "cannot store the upload");
	r->upload_tmp[0] = '\0';
	log_info("req=%s team=%s template file %s stored (%llu bytes)", r->request_id, r->team.id,
		 r->route.file_hash, (unsigned long long)r->upload_len);
	return request__json(r, 200, json_object(), NULL);
}

void templates_api__request_done(struct api_request *r)
{
	if (r->upload_fd > 0)
		close(r->upload_fd);
	r->upload_fd = 0;
	if (r->upload_tmp[0])
		unlink(r->upload_tmp);
	r->upload_tmp[0] = '\0';
}

/* Every COPY step's file must have been uploaded: 0, or -1 with err. */
static int plan__files_present(const struct template_plan *plan, const char *team_id, char *err,
			       size_t err_len)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < plan->step_count; i++) {
		if (plan->steps[i].kind != TEMPLATE_STEP_COPY)
			continue;
		if (!upload_path(team_id, plan->steps[i].files_hash, path, sizeof(path)) ||
		    access(path, R_OK)) {
			snprintf(err, err_len, "steps[%zu]: the files of hash %s were not uploaded",
				 i, plan->steps[i].files_hash);
			return -1;
		}
	}
	return 0;
}

/* Produces the build command; creates the topic once if needed. */
static int build__produce(struct api_request *r, const char *build_id, const char *template_id)
{
	static atomic_bool topic_ready;
	char topic[KAFKA_TOPIC_NAME_MAX + 1], err[256], sent_at[40];
	json_t *payload;
	char *text;
	int rc;

	snprintf(topic, sizeof(topic), "%s%s", r->config->topic_prefix, TEMPLATE_BUILDS_TOPIC);
	if (!atomic_load(&topic_ready)) {
		if (kafka__create_topic(&r->config->kafka, topic, 6, 0, 10000, err, sizeof(err))) {
			log_warn("topic %s: %s", topic, err);
			return -EIO;
		}
		atomic_store(&topic_ready, true);
	}
	clock__format_rfc3339(clock__realtime_ms(), sent_at);
	payload = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s}", "version", 1, "type",
			    "template_build", "request_id", r->request_id, "build_id", build_id,
			    "template_id", template_id, "team_id", r->team.id, "sent_at", sent_at);
	text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
	json_decref(payload);
	if (!text)
		return -ENOMEM;
	rc = bus__produce_raw(topic, build_id, text);
	free(text);
	return rc;
}

/* POST /v2/templates/{id}/builds/{buildID} with the steps. */
static enum MHD_Result templates_api__build(struct api_request *r, struct storage_pool *pool)
{
	struct template_plan *plan = calloc(1, sizeof(*plan));
	struct storage_template_build build = {0};
	json_error_t jerr;
	json_t *body = r->body ? json_loadb(r->body, r->body_len, 0, &jerr) : NULL;
	struct storage_error e;
	char err[512];
	enum MHD_Result ret;
	int rc;

	if (!plan) {
		ret = request__error(r, 500, "internal error");
		goto out;
	}
	rc = storage__template_build_get(pool, r->team.id, r->route.build_id, &build, &e);
	if (rc == STORAGE_ERR_NOT_FOUND ||
	    (!rc && strcmp(build.template_id, r->route.template_id))) {
		ret = request__error(r, 404, "build '%.64s' of template '%.64s' not found",
				     r->route.build_id, r->route.template_id);
		goto out;
	}
	if (rc) {
		ret = request__storage_error(r, &e);
		goto out;
	}
	if (template_plan__parse(body, plan, err, sizeof(err)) ||
	    plan__files_present(plan, r->team.id, err, sizeof(err))) {
		ret = request__error(r, 400, "%s", err);
		goto out;
	}
	if (!plan->oci && !strcmp(plan->base, r->route.template_id)) {
		ret = request__error(r, 400, "a template cannot be built from itself");
		goto out;
	}
	/* the base: installed, and not another team's own template */
	if (!plan->oci &&
	    (storage__template_get(pool, plan->base, NULL, NULL) != STORAGE_OK ||
	     storage__team_template_visible(pool, r->team.id, plan->base, NULL) != STORAGE_OK)) {
		ret = request__error(r, 400, "base template '%s' not found", plan->base);
		goto out;
	}
	rc = storage__template_build_start(pool, r->team.id, r->route.template_id,
					   r->route.build_id, body, &e);
	if (rc == STORAGE_ERR_CONFLICT) {
		ret = request__error(r, 409, "build '%s' was already started", r->route.build_id);
		goto out;
	}
	if (rc) {
		ret = request__storage_error(r, &e);
		goto out;
	}
	if (build__produce(r, r->route.build_id, r->route.template_id)) {
		storage__template_build_finish(pool, r->route.build_id, TEMPLATE_BUILD_ERROR,
					       "the build could not be queued", NULL, NULL);
		ret = request__error(r, 503, "the build could not be queued, retry later");
		goto out;
	}
	ret = request__empty(r, 202);
out:
	storage__template_build_clear(&build);
	json_decref(body);
	free(plan);
	return ret;
}

/* GET .../builds/{buildID}/status (logsOffset, limit) and .../logs
 * (cursor = offset, limit). */
static enum MHD_Result templates_api__status(struct api_request *r, struct storage_pool *pool,
					     bool logs_only)
{
	struct storage_template_build build = {0};
	struct storage_error e;
	const char *offset_s = request__query(r, logs_only ? "cursor" : "logsOffset");
	const char *limit_s = request__query(r, "limit");
	int64_t offset = offset_s ? strtoll(offset_s, NULL, 10) : 0;
	int64_t limit = limit_s ? strtoll(limit_s, NULL, 10) : 100;
	json_t *entries = NULL, *answer, *tail = NULL;
	enum MHD_Result ret;
	int rc;

	if (offset < 0 || limit < 1 || limit > 1000)
		return request__error(r, 400, "offsets must be >= 0 and limit in [1, 1000]");
	rc = storage__template_build_get(pool, r->team.id, r->route.build_id, &build, &e);
	if (rc == STORAGE_ERR_NOT_FOUND || (!rc && strcmp(build.template_id, r->route.template_id)))
		return request__error(r, 404, "build '%.64s' of template '%.64s' not found",
				      r->route.build_id, r->route.template_id);
	if (rc)
		return request__storage_error(r, &e);
	rc = storage__template_build_logs(pool, build.id, offset, limit, &entries, &e);
	if (rc) {
		ret = request__storage_error(r, &e);
		goto out;
	}
	if (logs_only) {
		ret = request__json(r, 200, json_pack("{s:o}", "logs", entries), NULL);
		entries = NULL;
		goto out;
	}
	answer = json_pack("{s:s, s:s, s:s, s:o, s:[]}", "templateID", build.template_id, "buildID",
			   build.id, "status", template_build__status_name(build.status),
			   "logEntries", entries, "logs");
	entries = NULL;
	if (answer && build.status == TEMPLATE_BUILD_ERROR) {
		json_t *reason =
		    json_pack("{s:s}", "message", build.reason[0] ? build.reason : "build failed");

		if (build.reason_step[0])
			json_object_set_new(reason, "step", json_string(build.reason_step));
		if (storage__template_build_log_tail(pool, build.id, 20, &tail, NULL))
			tail = json_array();
		json_object_set_new(reason, "logEntries", tail);
		tail = NULL;
		json_object_set_new(answer, "reason", reason);
	}
	ret = request__json(r, 200, answer, NULL);
out:
	json_decref(entries);
	json_decref(tail);
	storage__template_build_clear(&build);
	return ret;
}

static enum MHD_Result templates_api__alias(struct api_request *r, struct storage_pool *pool)
{
	struct storage_error e;
	struct storage_template installed;
	bool exists = false, owned = false;

	if (storage__template_alias_lookup(pool, r->team.id, r->route.template_id, &exists, &owned,
					   &e))
		return request__storage_error(r, &e);
	if (owned)
		return request__json(
		    r, 200,
		    json_pack("{s:s, s:b}", "templateID", r->route.template_id, "public", 0), NULL);
	if (storage__template_get(pool, r->route.template_id, &installed, NULL) == STORAGE_OK &&
	    exists)
		/* installed on the hosts and owned by no team: public */
		return request__json(
		    r, 200,
		    json_pack("{s:s, s:b}", "templateID", r->route.template_id, "public", 1), NULL);
	if (exists)
		return request__error(r, 403, "alias '%.64s' belongs to another team",
				      r->route.template_id);
	return request__error(r, 404, "alias '%.64s' not found", r->route.template_id);
}

enum MHD_Result templates_api__dispatch(struct api_request *r, struct storage_pool *pool)
{
	struct storage_error e;
	json_t *out = NULL;
	int rc;

	switch (r->route.endpoint) {
	case API_ROUTE_TEMPLATE_CREATE:
		return templates_api__create(r, pool);
	case API_ROUTE_TEMPLATE_FILE:
		return templates_api__file(r, pool);
	case API_ROUTE_TEMPLATE_BUILD:
		return templates_api__build(r, pool);
	case API_ROUTE_TEMPLATE_BUILD_STATUS:
		return templates_api__status(r, pool, false);
	case API_ROUTE_TEMPLATE_BUILD_LOGS:
		return templates_api__status(r, pool, true);
	case API_ROUTE_TEMPLATE_ALIAS:
		return templates_api__alias(r, pool);
	case API_ROUTE_TEMPLATE_LIST:
		rc = storage__team_template_list(pool, r->team.id, &out, &e);
		return rc ? request__storage_error(r, &e) : request__json(r, 200, out, NULL);
	case API_ROUTE_TEMPLATE_GET:
		rc = storage__team_template_get(pool, r->team.id, r->route.template_id, &out, &e);
		if (rc == STORAGE_ERR_NOT_FOUND)
			return not_found(r, r->route.template_id);
		return rc ? request__storage_error(r, &e) : request__json(r, 200, out, NULL);
	case API_ROUTE_TEMPLATE_DELETE:
		rc = storage__team_template_delete(pool, r->team.id, r->route.template_id, &e);
		if (rc == STORAGE_ERR_NOT_FOUND)
			return not_found(r, r->route.template_id);
		if (!rc)
			log_info("req=%s team=%s template %s deleted", r->request_id, r->team.id,
				 r->route.template_id);
		return rc ? request__storage_error(r, &e) : request__empty(r, 204);
	default:
		return request__error(r, 404, "no such endpoint");
	}
}
