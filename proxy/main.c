/* warren-proxy: the public URL front of every sandbox port (docs/proxy.md;
 * docs/e2b-compatibility.md, "Public URLs and proxy"). Settings: README.md. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#ifdef WARREN_PROXY_KAFKA
#include "warren/prom.h"
#include "events.h"
#endif
#include "limiter.h"
#include "lookup.h"
#include "server.h"
#include "warren/config.h"
#include "warren/log.h"
#include "warren/service.h"
#include "warren/storage.h"

static struct proxy_server *running_server;

/* SIGINT/SIGTERM stop; SIGHUP reloads the TLS certificate (renewal). */
static void proxy__on_signal(int signal_number)
{
	if (!running_server)
		return;
	if (signal_number == SIGHUP)
		proxy__reload_tls(running_server);
	else
		proxy__stop(running_server);
}

int main(void)
{
	struct proxy_settings settings;
	struct lookup_config lookup_config;
	struct storage_error storage_err;
	struct storage_pool *pool = NULL;
	struct lookup *lookup = NULL;
	struct limiter *limiter = NULL;
	struct proxy_server *server = NULL;
#ifdef WARREN_PROXY_KAFKA
	struct proxy_events *events = NULL;
#endif
	struct limiter_config limiter_config;
	struct sigaction action;
	struct storage_settings storage;
	const char *seed;
	char err[256];
	int rc = 1;

	log__set_component("proxy");
	if (proxy__settings_from_config(&settings, err, sizeof(err))) {
		log_error("%s", err);
		return 1;
	}
	seed = config__get("token_seed", NULL);
	if (!seed || !*seed) {
		if (!config__get_bool("dev_mode", false)) {
			log_error(
			    "token_seed is required (set WARREN_TOKEN_SEED; dev_mode=true allows "
			    "a fixed development seed)");
			return 1;
		}
		seed = "warren-dev-mode-token-seed";
		log_warn("dev_mode: using the fixed development token seed");
	}
	if (strlen(seed) < 16) {
		log_error("token_seed must be at least 16 characters");
		return 1;
	}
	storage_settings__from_config(&storage, "postgresql://postgres@127.0.0.1:55432/postgres",
				      settings.threads + 1);
	pool = storage__pool_open_settings(&storage, &storage_err);
	if (!pool) {
		log_error("cannot open the PostgreSQL pool: %s", storage_err.message);
		goto out;
	}
	lookup_config = (struct lookup_config){
	    .ttl_ms = (uint64_t)config__get_int("proxy_cache_ttl_ms", 2000),
	    .negative_ttl_ms = (uint64_t)config__get_int("proxy_cache_negative_ttl_ms", 1000),
	    .stale_ms = (uint64_t)config__get_int("proxy_cache_stale_ms", 10000),
	    .max_connections = (int)config__get_int("proxy_max_conns_per_sandbox", 1000),
	    .wake_timeout_ms = (uint64_t)config__get_int("proxy_auto_resume_wait_ms", 10000),
	    .token_seed = seed,
	};
	lookup = lookup__create(pool, &lookup_config);
	/* Shared by every instance on this PostgreSQL unless proxy_ops_shared
	 * is false (then each instance counts alone). */
	limiter_config = (struct limiter_config){
	    .limit = config__get_int("proxy_ops_per_ip", 40000),
	    .window_s = config__get_int("proxy_ops_window_s", 60),
	    .pg_url = config__get_bool("proxy_ops_shared", true)
			  ? config__get("proxy_ops_pg_url", storage.url)
			  : NULL,
	    .pg = &storage,
	};
	limiter = limiter__create(&limiter_config);
	if (!lookup || !limiter) {
		log_error("invalid proxy_ops_per_ip / proxy_ops_window_s / proxy_ops_pg_url, or "
			  "out of memory");
		goto out;
	}
	log_info("per-IP limit %lld / %lld s, %s", (long long)limiter_config.limit,
		 (long long)limiter_config.window_s,
		 limiter_config.pg_url ? "shared through PostgreSQL" : "in process");
	server = proxy__create(&settings, lookup, limiter, err, sizeof(err));
	if (!server) {
		log_error("%s", err);
		goto out;
	}
#ifdef WARREN_PROXY_KAFKA
	if (config__get_bool("proxy_kafka_events", true)) {
		events = proxy_events__start(lookup, err, sizeof(err));
		if (!events)
			log_warn("events: %s; the cache relies on its TTL", err);
	}
#endif
	if (prom__serve_logged(config__get("metrics_listen", "")))
		goto out;
	running_server = server;
	memset(&action, 0, sizeof(action));
	action.sa_handler = proxy__on_signal;
	sigaction(SIGINT, &action, NULL);
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGHUP, &action, NULL);
	signal(SIGPIPE, SIG_IGN);
	log_info("listening on %s:%u, domain %s, %d threads", settings.listen_host,
		 settings.listen_port, settings.domain, settings.threads);
	if (settings.tls)
		log_info("listening on %s:%u with TLS (%s)", settings.tls_listen_host,
			 settings.tls_listen_port, settings.tls_cert_file);
	service__notify("READY=1"); /* systemd Type=notify */
	rc = proxy__run(server) == 0 ? 0 : 1;
	service__notify("STOPPING=1");
	log_info("stopped");
out:
	prom__stop();
	running_server = NULL;
#ifdef WARREN_PROXY_KAFKA
	proxy_events__stop(events);
#endif
	proxy__destroy(server);
	limiter__destroy(limiter);
	lookup__destroy(lookup);
	if (pool)
		storage__pool_close(pool);
	return rc;
}
