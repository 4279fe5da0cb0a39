/* server: HTTP plumbing of warren-api over libmicrohttpd (thread pool,
 * epoll, suspend/resume for requests that wait for a worker's result),
 * waiters, and the storage pool that reconnects in the background. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_metrics.h"
#include "request.h"
#include "warren/clock.h"
#include "warren/check.h"
#include "warren/config.h"
#include "warren/ids.h"
#include "warren/json_util.h"
#include "warren/log.h"
#include "warren/net_address.h"

/* ---- configuration ---- */

#define API_TLS_PEM_MAX (1024 * 1024)

/* Reads the PEM file at path into *out (malloc'd, NUL-terminated). 0, or
 * -errno with why in err. */
static int server__read_pem(const char *path, char **out, char *err, size_t err_len)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t len = 0;
	int rc = 0;

	if (!f) {
		rc = -errno;
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return rc;
	}
	text = malloc(API_TLS_PEM_MAX + 1);
	if (!text) {
		rc = -ENOMEM;
		snprintf(err, err_len, "out of memory");
		goto out;
	}
	len = fread(text, 1, API_TLS_PEM_MAX + 1, f);
	if (ferror(f) || len == 0 || len > API_TLS_PEM_MAX || !strstr(text, "-----BEGIN ")) {
		rc = -EINVAL;
		snprintf(err, err_len, "%s: not a PEM file under 1 MiB", path);
		goto out;
	}
	text[len] = '\0';
	*out = text;
	text = NULL;
out:
	free(text);
	fclose(f);
	return rc;
}

/* api_tls_cert_file + api_tls_key_file: both (HTTPS) or neither (HTTP). */
static int server__config_tls(struct api_config *c, char *err, size_t err_len)
{
	const char *cert = config__get("api_tls_cert_file", NULL);
	const char *key = config__get("api_tls_key_file", NULL);

	if (!cert && !key)
		return 0;
	if (!cert || !key) {
		snprintf(err, err_len, "api_tls_cert_file and api_tls_key_file go together");
		return -EINVAL;
	}
	if (server__read_pem(cert, &c->tls_cert_pem, err, err_len) ||
	    server__read_pem(key, &c->tls_key_pem, err, err_len))
		return -EINVAL;
	return 0;
}

int api__config_load(struct api_config *c, char *err, size_t err_len)
{
	const char *listen = config__get("api_listen", "127.0.0.1:3000");
	uint16_t port;

	memset(c, 0, sizeof(*c));
	if (address__parse_host_port(listen, c->listen_host, sizeof(c->listen_host), &port)) {
		snprintf(err, err_len, "api_listen must be host:port (port 0..65535), got \"%s\"",
			 listen);
		return -EINVAL;
	}
	c->listen_port = port;
	storage_settings__from_config(&c->storage, "postgresql://postgres@127.0.0.1:55432/postgres",
				      8);
	kafka_settings__from_config(&c->kafka);
	c->topic_prefix = config__get("kafka_topic_prefix", "");
	c->dev_mode = config__get_bool("dev_mode", false);
	c->token_seed = config__get("token_seed", NULL);
	if (!c->token_seed || !*c->token_seed) {
		if (!c->dev_mode) {
			snprintf(err, err_len,
				 "token_seed is required (set WARREN_TOKEN_SEED; dev_mode=true "
				 "allows a fixed development seed)");
			return -EINVAL;
		}
		c->token_seed = "warren-dev-mode-token-seed";
		log_warn("dev_mode: using the fixed development token seed; never do this in "
			 "production");
	}
	if (strlen(c->token_seed) < 16) {
		/* The same floor as warren-worker: both derive the same tokens. */
		snprintf(err, err_len, "token_seed must be at least 16 characters");
		return -EINVAL;
	}
	c->domain = config__get("domain", "");
	c->create_deadline_ms = config__get_int("create_deadline_ms", 60000);
	c->operation_deadline_ms = config__get_int("operation_deadline_ms", 15000);
	c->snapshot_deadline_ms = config__get_int("snapshot_deadline_ms", 120000);
	c->produce_timeout_ms = config__get_int("kafka_produce_timeout_ms", 5000);
	c->pg_start_wait_ms = config__get_int("pg_start_wait_ms", 10000);
	c->max_body_bytes = (size_t)config__get_int("api_max_body_bytes", 1024 * 1024);
	c->http_threads = (int)config__get_int("api_threads", 8);
	c->cpu_count = (int)config__get_int("sandbox_cpu_count", 2);
	c->memory_mb = (int)config__get_int("sandbox_memory_mb", 512);
	c->disk_mb = (int)config__get_int("sandbox_disk_mb", 1024);
	c->volume_size_mb = config__get_int("volume_size_mb", 1024);
	c->volume_quota_count = config__get_int("volume_quota_count", 20);
	c->volume_quota_mb = config__get_int("volume_quota_mb", 20480);
	if (server__config_tls(c, err, err_len))
		return -EINVAL;
	if (c->storage.pool_size < 1 || c->http_threads < 1 || c->create_deadline_ms < 1 ||
	    c->operation_deadline_ms < 1 || c->snapshot_deadline_ms < 1 ||
	    c->produce_timeout_ms < 1 || c->max_body_bytes < 1) {
		snprintf(err, err_len, "a numeric setting is out of range");
		return -EINVAL;
	}
	if (snprintf(c->commands_topic, sizeof(c->commands_topic), "%s%s", c->topic_prefix,
		     KAFKA_TOPIC_SANDBOX_COMMANDS) >= (int)sizeof(c->commands_topic) ||
	    snprintf(c->events_topic, sizeof(c->events_topic), "%s%s", c->topic_prefix,
		     KAFKA_TOPIC_SANDBOX_EVENTS) >= (int)sizeof(c->events_topic)) {
		snprintf(err, err_len, "kafka_topic_prefix is too long");
		return -EINVAL;
	}
	return 0;
}

/* ---- the storage pool, opened in the background until it works ---- */

static _Atomic(struct storage_pool *) api_pool;
static atomic_bool api_pool_stop;
static pthread_t api_pool_thread;
static bool api_pool_thread_started;

struct storage_pool *api__pool(void)
{
	return atomic_load(&api_pool);
}

static void *server__pool_opener(void *arg)
{
	const struct api_config *config = arg;
	int64_t last_log = 0;

	while (!atomic_load(&api_pool_stop)) {
		struct storage_error e;
		struct storage_pool *pool = storage__pool_open_settings(&config->storage, &e);

		if (pool) {
			/* Rate limits shared by every instance (api_limits.h). */
			limits__use_shared(&config->storage);
			atomic_store(&api_pool, pool);
			log_info("PostgreSQL pool open (%d connections)",
				 config->storage.pool_size);
			return NULL;
		}
		if (clock__monotonic_ms() - (uint64_t)last_log > 10000) {
			log_warn("PostgreSQL unreachable, answering 503 until it is: %s",
				 e.message);
			last_log = (int64_t)clock__monotonic_ms();
		}
		for (int i = 0; i < 10 && !atomic_load(&api_pool_stop); i++)
			usleep(100 * 1000);
	}
	return NULL;
}

/* ---- waiters ---- */

static pthread_mutex_t waiters_lock = PTHREAD_MUTEX_INITIALIZER;
static struct api_waiter *waiters_head;

void waiters__add(struct api_waiter *w)
{
	pthread_mutex_lock(&waiters_lock);
	w->next = waiters_head;
	waiters_head = w;
	pthread_mutex_unlock(&waiters_lock);
}

void waiters__remove(struct api_waiter *w)
{
	pthread_mutex_lock(&waiters_lock);
	for (struct api_waiter **link = &waiters_head; *link; link = &(*link)->next) {
		if (*link == w) {
			*link = w->next;
			break;
		}
	}
	w->next = NULL;
	pthread_mutex_unlock(&waiters_lock);
}

bool waiters__suspend(struct api_waiter *w, void *connection)
{
	bool suspended = false;

	pthread_mutex_lock(&waiters_lock);
	if (!w->done) {
		w->connection = connection;
		MHD_suspend_connection(connection);
		w->suspended = true;
		suspended = true;
	}
	pthread_mutex_unlock(&waiters_lock);
	return suspended;
}

/* Caller holds waiters_lock. */
static void waiters__wake(struct api_waiter *w)
{
	w->done = true;
	if (w->suspended) {
		w->suspended = false;
		MHD_resume_connection(w->connection);
	}
}

bool waiters__deliver(const struct kafka_event *ev)
{
	bool found = false;

	pthread_mutex_lock(&waiters_lock);
	for (struct api_waiter *w = waiters_head; w; w = w->next) {
		if (w->done || strcmp(w->request_id, ev->request_id) ||
		    !(w->want & (1u << ev->type)))
			continue;
		w->result_type = ev->type;
		snprintf(w->host_id, sizeof(w->host_id), "%s", ev->host_id);
		w->result = ev->result ? json_incref(ev->result) : json_object();
		waiters__wake(w);
		found = true;
		break;
	}
	pthread_mutex_unlock(&waiters_lock);
	return found;
}

void waiters__expire(int64_t now_ms)
{
	pthread_mutex_lock(&waiters_lock);
	for (struct api_waiter *w = waiters_head; w; w = w->next) {
		if (!w->done && w->deadline_ms <= now_ms) {
			w->timed_out = true;
			waiters__wake(w);
		}
	}
	pthread_mutex_unlock(&waiters_lock);
}

void waiters__cancel_all(void)
{
	waiters__expire(INT64_MAX);
}

/* ---- responses ---- */

static enum MHD_Result request__queue(struct api_request *r, int status, char *text, size_t len,
				      const char *const *headers)
{
	struct MHD_Response *response;
	enum MHD_Result ret;

	/* every status is the code's own choice (a worker's is clamped first) */
	CHECK(status >= 100 && status <= 599);
	if (r->capture) {
		/* a step of a fork: kept for fork_api.c, not sent */
		json_decref(r->captured_body);
		r->captured_body = text ? json_loadb(text, len, 0, NULL) : NULL;
		r->captured_status = status;
		r->phase = API_PHASE_ANSWERED;
		free(text);
		return MHD_YES;
	}
	response = text ? MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE)
			: MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!response) {
		free(text);
		return MHD_NO;
	}
	if (text)
		MHD_add_response_header(response, "Content-Type", "application/json");
	MHD_add_response_header(response, "X-Request-Id", r->request_id);
	for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
		MHD_add_response_header(response, headers[i], headers[i + 1]);
	ret = MHD_queue_response(r->connection, (unsigned int)status, response);
	MHD_destroy_response(response);
	r->status = status;
	r->phase = API_PHASE_ANSWERED;
	return ret;
}

enum MHD_Result request__json(struct api_request *r, int status, json_t *body,
			      const char *const *headers)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

	json_decref(body);
	if (!text) {
		static const char internal[] = "{\"code\":500,\"message\":\"internal error\"}";

		text = strdup(internal);
		status = 500;
		if (!text)
			return MHD_NO;
	}
	return request__queue(r, status, text, strlen(text), headers);
}

enum MHD_Result request__error(struct api_request *r, int status, const char *fmt, ...)
{
	char message[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	if (status >= 500)
		log_warn("req=%s %s %s -> %d: %s", r->request_id, r->method, r->path, status,
			 message);
	return request__json(r, status, render__error(status, message), NULL);
}

enum MHD_Result request__unavailable(struct api_request *r, int retry_after_s, const char *fmt, ...)
{
	char message[600], retry[24];
	const char *headers[] = {"Retry-After", retry, NULL};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	snprintf(retry, sizeof(retry), "%d", retry_after_s > 0 ? retry_after_s : 1);
	log_warn("req=%s %s %s -> 503: %s", r->request_id, r->method, r->path, message);
	return request__json(r, 503, render__error(503, message), headers);
}

enum MHD_Result request__empty(struct api_request *r, int status)
{
	return request__queue(r, status, NULL, 0, NULL);
}

enum MHD_Result request__rate_limited(struct api_request *r, const struct limits_decision *d)
{
	char limit[24], remaining[24], reset[24], retry[24];
	const char *headers[] = {"RateLimit-Limit",
				 limit,
				 "RateLimit-Remaining",
				 remaining,
				 "RateLimit-Reset",
				 reset,
				 "Retry-After",
				 retry,
				 NULL};

	snprintf(limit, sizeof(limit), "%lld", (long long)d->limit);
	snprintf(remaining, sizeof(remaining), "%lld", (long long)d->remaining);
	snprintf(reset, sizeof(reset), "%lld", (long long)d->reset_s);
	snprintf(retry, sizeof(retry), "%lld",
		 (long long)(d->retry_after_s > 0 ? d->retry_after_s : 1));
	log_info("req=%s team=%s 429 %s: %s", r->request_id, r->team.id, d->limit_name, d->message);
	return request__json(r, 429, render__error(429, d->message), headers);
}

enum MHD_Result request__storage_error(struct api_request *r, const struct storage_error *e)
{
	if (e->code == STORAGE_ERR_UNAVAILABLE)
		return request__error(r, 503, "database unavailable, retry later");
	log_error("req=%s storage error %s: %s", r->request_id, storage__status_name(e->code),
		  e->message);
	return request__error(r, 500, "internal error");
}

const char *request__query(struct api_request *r, const char *name)
{
	return MHD_lookup_connection_value(r->connection, MHD_GET_ARGUMENT_KIND, name);
}

void request__render_context(const struct api_request *r, const char *envd_version,
			     struct render_context *out)
{
	out->token_seed = r->config->token_seed;
	out->domain = r->config->domain;
	out->envd_version = envd_version;
	out->cpu_count = r->config->cpu_count;
	out->memory_mb = r->config->memory_mb;
	out->disk_mb = r->config->disk_mb;
}

/* ---- the daemon ---- */

struct api_server {
	struct api_config config;
	struct MHD_Daemon *daemon;
	pthread_t reaper;
	atomic_bool stop;
	int port;
};

static void *server__reaper(void *arg)
{
	struct api_server *server = arg;

	while (!atomic_load(&server->stop)) {
		waiters__expire((int64_t)clock__monotonic_ms());
		usleep(10 * 1000);
	}
	return NULL;
}

static struct api_request *server__new_request(struct api_server *server,
					       struct MHD_Connection *connection, const char *url,
					       const char *method)
{
	struct api_request *r = calloc(1, sizeof(*r));
	const char *client_id;

	if (!r)
		return NULL;
	r->connection = connection;
	r->config = &server->config;
	r->method = method;
	r->started_ms = (int64_t)clock__monotonic_ms();
	r->started_ns = clock__monotonic_ns();
	snprintf(r->path, sizeof(r->path), "%s", url ? url : "");
	/* X-Request-Id: the client's when it is a UUID (then it is also the
	 * idempotency key of a create), else a new one. */
	client_id = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "X-Request-Id");
	if (client_id && ids__is_uuid(client_id)) {
		for (size_t i = 0; i <= IDS_UUID_LEN; i++)
			r->request_id[i] =
			    (char)(client_id[i] >= 'A' && client_id[i] <= 'F' ? client_id[i] + 32
									      : client_id[i]);
		r->request_id_from_client = true;
	} else if (ids__uuid(r->request_id)) {
		free(r);
		return NULL;
	}
	route__match(method, r->path, &r->route);
	return r;
}

static enum MHD_Result server__access(void *cls, struct MHD_Connection *connection, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	struct api_server *server = cls;
	struct api_request *r = *con_cls;

	if (!r) {
		const char *length;

		r = server__new_request(server, connection, url, method);
		if (!r)
			return MHD_NO;
		*con_cls = r;
		length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Content-Length");
		if (r->route.endpoint == API_ROUTE_TEMPLATE_UPLOAD)
			return MHD_YES; /* streamed to a file, its own limit */
		if (length && strtoull(length, NULL, 10) > server->config.max_body_bytes) {
			r->body_too_large = true;
			return request__error(r, 413, "request body is larger than %zu bytes",
					      server->config.max_body_bytes);
		}
		return MHD_YES;
	}
	if (r->phase == API_PHASE_ANSWERED) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size && r->route.endpoint == API_ROUTE_TEMPLATE_UPLOAD) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		templates_api__upload_chunk(r, upload_data, n);
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (r->body_too_large || r->body_len + n > server->config.max_body_bytes) {
			r->body_too_large = true;
			return MHD_YES;
		}
		if (r->body_len + n + 1 > r->body_cap) {
			size_t cap = (r->body_len + n + 1) * 2;
			char *body;

			if (cap > server->config.max_body_bytes + 1)
				cap = server->config.max_body_bytes + 1;
			body = realloc(r->body, cap);
			if (!body)
				return MHD_NO;
			r->body = body;
			r->body_cap = cap;
		}
		memcpy(r->body + r->body_len, upload_data, n);
		r->body_len += n;
		r->body[r->body_len] = '\0';
		return MHD_YES;
	}
	if (r->body_too_large)
		return request__error(r, 413, "request body is larger than %zu bytes",
				      server->config.max_body_bytes);
	return handlers__dispatch(r);
}

static void server__completed(void *cls, struct MHD_Connection *connection, void **con_cls,
			      enum MHD_RequestTerminationCode code)
{
	struct api_request *r = *con_cls;
	char timing[128];

	if (!r)
		return;
	waiters__remove(&r->waiter);
	json_decref(r->waiter.result);
	templates_api__request_done(r);
	fork_api__request_done(r);
	if (r->have_sandbox)
		storage__sandbox_clear(&r->sandbox);
	timing[0] = '\0';
	if (r->queued_ns && r->result_ns)
		snprintf(timing, sizeof(timing),
			 " (checks+admission %.2f ms, kafka ack %.2f ms, result wait %.2f ms)",
			 (double)(r->admitted_ns - r->started_ns) / 1e6,
			 (double)(r->queued_ns - r->admitted_ns) / 1e6,
			 (double)(r->result_ns - r->queued_ns) / 1e6);
	api_metrics__request(r->route.endpoint, r->status, r->started_ns);
	log_info("req=%s %s %s -> %d in %.2f ms%s%s%s%s", r->request_id, r->method, r->path,
		 r->status, (double)(clock__monotonic_ns() - r->started_ns) / 1e6,
		 r->team.id[0] ? " team=" : "", r->team.id, timing,
		 code == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
	free(r->body);
	free(r);
	*con_cls = NULL;
}

struct api_server *api__server_start(const struct api_config *config, char *err, size_t err_len)
{
	struct api_server *server = calloc(1, sizeof(*server));
	struct sockaddr_in address = {.sin_family = AF_INET};
	/* GnuTLS priorities: TLS 1.2 and 1.3 only. */
	struct MHD_OptionItem tls_options[] = {
	    {MHD_OPTION_HTTPS_MEM_CERT, 0, config->tls_cert_pem},
	    {MHD_OPTION_HTTPS_MEM_KEY, 0, config->tls_key_pem},
	    {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
	    {MHD_OPTION_END, 0, NULL},
	};
	const union MHD_DaemonInfo *info;

	if (!server) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	server->config = *config;
	if (inet_pton(AF_INET, config->listen_host, &address.sin_addr) != 1) {
		snprintf(err, err_len, "api_listen host must be an IPv4 address, got \"%s\"",
			 config->listen_host);
		goto err;
	}
	address.sin_port = htons((uint16_t)config->listen_port);
	atomic_store(&api_pool_stop, false);
	if (pthread_create(&api_pool_thread, NULL, server__pool_opener, &server->config)) {
		snprintf(err, err_len, "cannot start the pool thread");
		goto err;
	}
	api_pool_thread_started = true;
	/* Give PostgreSQL a moment before listening, so a healthy start
	 * never answers 503; past that, serve (503) while it keeps trying. */
	for (int64_t waited = 0; !api__pool() && waited < config->pg_start_wait_ms; waited += 20)
		usleep(20 * 1000);
	if (config->tls_cert_pem && !MHD_is_feature_supported(MHD_FEATURE_TLS)) {
		snprintf(err, err_len, "api_tls_cert_file is set but libmicrohttpd has no TLS");
		goto err;
	}
	server->daemon = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
		MHD_USE_ERROR_LOG | (config->tls_cert_pem ? MHD_USE_TLS : 0),
	    0, NULL, NULL, server__access, server, MHD_OPTION_ARRAY,
	    config->tls_cert_pem ? tls_options : tls_options + 3, MHD_OPTION_SOCK_ADDR, &address,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)config->http_threads,
	    MHD_OPTION_NOTIFY_COMPLETED, server__completed, server, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned int)120, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
	    MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1, MHD_OPTION_END);
	if (!server->daemon) {
		snprintf(err, err_len, "cannot listen on %s:%d%s: %s", config->listen_host,
			 config->listen_port,
			 config->tls_cert_pem ? " (or the TLS certificate and key do not match)"
					      : "",
			 strerror(errno));
		goto err;
	}
	info = MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
	server->port = info ? info->port : config->listen_port;
	if (pthread_create(&server->reaper, NULL, server__reaper, server)) {
		snprintf(err, err_len, "cannot start the deadline thread");
		MHD_stop_daemon(server->daemon);
		goto err;
	}
	return server;
err:
	if (api_pool_thread_started) {
		atomic_store(&api_pool_stop, true);
		pthread_join(api_pool_thread, NULL);
		api_pool_thread_started = false;
	}
	free(server);
	return NULL;
}

int api__server_port(const struct api_server *server)
{
	return server->port;
}

void api__server_stop(struct api_server *server)
{
	struct storage_pool *pool;

	if (!server)
		return;
	MHD_quiesce_daemon(server->daemon);
	waiters__cancel_all();
	usleep(200 * 1000); /* let resumed requests answer */
	atomic_store(&server->stop, true);
	pthread_join(server->reaper, NULL);
	waiters__cancel_all();
	MHD_stop_daemon(server->daemon);
	atomic_store(&api_pool_stop, true);
	if (api_pool_thread_started) {
		pthread_join(api_pool_thread, NULL);
		api_pool_thread_started = false;
	}
	pool = atomic_exchange(&api_pool, NULL);
	if (pool)
		storage__pool_close(pool);
	free(server);
}
