/* settings: see settings.h. */
#include "settings.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "warren/config.h"
#include "warren/jail.h"
#include "warren/net.h"
#include "warren/templates.h"

void worker_settings__configure_libraries(void)
{
	struct jail_host_settings jail = {
	    .state_dir = config__get("state_dir", NULL),
	    .cgroup_parent = config__get("jail_cgroup_parent", NULL),
	    .disk_cache_dir = config__get("jail_disk_cache_dir", NULL),
	    .init_path = config__get("jail_init_path", NULL),
	    .uid_dir = config__get("jail_uid_dir", NULL),
	    .first_uid = config__get_int("jail_uid_base", 0),
	};
	struct templates_settings templates = {
	    .dir = config__get("templates_dir", NULL),
	    .cache_dir = config__get("template_cache_dir", NULL),
	    .agent_binary = config__get("agent_binary", NULL),
	    .builder = config__get("template_builder", NULL),
	};

	jail__configure_host(&jail);
	templates__configure(&templates);
}

/* Appends the addresses host resolves to (as "a,b,") to out. */
static void append_addresses(const char *host, char *out, size_t size)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *found = NULL;

	if (getaddrinfo(host, NULL, &hints, &found) != 0)
		return;
	for (struct addrinfo *a = found; a; a = a->ai_next) {
		char text[INET6_ADDRSTRLEN];
		const void *address =
		    a->ai_family == AF_INET
			? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
			: (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
		size_t len = strlen(out);

		if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
		    inet_ntop(a->ai_family, address, text, sizeof(text)))
			snprintf(out + len, size - len, "%s,", text);
	}
	freeaddrinfo(found);
}

/* net_never_allow plus the addresses of the platform's own PostgreSQL
 * (pg_url) and Kafka brokers (kafka_brokers): a tenant's allowOut of a
 * private range must never reach them. Lives until exit. */
static const char *never_allow_setting(void)
{
	static char text[4096];
	const char *brokers = config__get("kafka_brokers", "");
	char host[256];

	snprintf(text, sizeof(text), "%s,", config__get("net_never_allow", ""));
	if (net_policy__endpoint_host(config__get("pg_url", ""), host, sizeof(host)))
		append_addresses(host, text, sizeof(text));
	for (const char *p = brokers; *p; p += strcspn(p, ",")) {
		p += strspn(p, ", ");
		if (net_policy__endpoint_host(p, host, sizeof(host)))
			append_addresses(host, text, sizeof(text));
	}
	return text;
}

void worker_settings__net_pool(struct net_pool_config *config)
{
	memset(config, 0, sizeof(*config));
	config->netns_prefix = config__get("slot_netns_prefix", "warren-slot-");
	config->link_prefix = config__get("slot_link_prefix", "wslot");
	config->slot_cidr = config__get("slot_cidr", "10.11.0.0/16");
	config->uplink_interface = config__get("uplink_interface", NULL);
	if (inet_pton(AF_INET, config__get("sandbox_nameserver", "8.8.8.8"), &config->nameserver) !=
	    1)
		inet_pton(AF_INET, "8.8.8.8", &config->nameserver);
	if (inet_pton(AF_INET, config__get("egress_resolver", "8.8.8.8"), &config->resolver) != 1)
		inet_pton(AF_INET, "8.8.8.8", &config->resolver);
	config->resolver_port = (uint16_t)config__get_int("egress_resolver_port", 53);
	config->proxy_http_port = (uint16_t)config__get_int("egress_proxy_http_port", 3128);
	config->proxy_tls_port = (uint16_t)config__get_int("egress_proxy_tls_port", 3129);
	config->precreate = (unsigned)config__get_int("slot_precreate", 8);
	config->max_slots = (unsigned)config__get_int("slot_max", 1024);
	config->never_allow = never_allow_setting();
	config->egress_max_connections = (unsigned)config__get_int("egress_max_connections", 0);
	config->egress_slot_max_connections =
	    (unsigned)config__get_int("egress_slot_max_connections", 0);
	config->egress_idle_timeout_s = (unsigned)config__get_int("egress_idle_timeout_s", 0);
}
