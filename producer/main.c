/* warren-api: the E2B-compatible REST API (docs/api.md). Reads its
 * settings (api__config_load), connects to Kafka (waits for the result
 * consumer's assignment), serves HTTP until SIGINT/SIGTERM. PostgreSQL
 * may come later: requests get 503 until the pool is open. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "api_metrics.h"
#include "api_limits.h"
#include "warren/config.h"
#include "warren/log.h"
#include "warren/prom.h"
#include "warren/service.h"

static volatile sig_atomic_t main_stop;

static void main__on_signal(int sig)
{
	(void)sig;
	main_stop = 1;
}

int main(int argc, char **argv)
{
	struct api_config config;
	struct api_server *server;
	struct sigaction action = {.sa_handler = main__on_signal};
	char err[512];

	log__set_component("api");
	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: warren-api\nsettings by environment (WARREN_<NAME>) or the file "
		       "named by WARREN_CONFIG; see docs/api.md\n");
		return 0;
	}
	if (api__config_load(&config, err, sizeof(err))) {
		log_error("%s", err);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &action, NULL);
	sigaction(SIGTERM, &action, NULL);
	if (bus__start(&config, (int)config__get_int("kafka_start_wait_ms", 30000), err,
		       sizeof(err))) {
		log_error("Kafka: %s", err);
		return 1;
	}
	if (api_metrics__start(config__get("metrics_listen", ""))) {
		bus__stop();
		return 1;
	}
	server = api__server_start(&config, err, sizeof(err));
	if (!server) {
		log_error("%s", err);
		bus__stop();
		return 1;
	}
	/* One line tests and scripts wait for. */
	log_info("listening on %s:%d%s (commands %s, results %s)", config.listen_host,
		 api__server_port(server), config.tls_cert_pem ? " with TLS" : "",
		 config.commands_topic, config.events_topic);
	printf("warren-api listening on %s:%d\n", config.listen_host, api__server_port(server));
	fflush(stdout);
	service__notify("READY=1"); /* systemd Type=notify */
	while (!main_stop)
		pause();
	service__notify("STOPPING=1");
	log_info("shutting down");
	api__server_stop(server);
	prom__stop();
	bus__stop();
	limits__close_shared(); /* gives unspent leased tokens back */
	return 0;
}
