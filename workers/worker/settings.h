/* settings: the worker reads the settings of the libraries it drives
 * once, at start, into their typed structs and hands them over; the
 * libraries (workers/jail, workers/net, lib/templates) never read the
 * configuration themselves. The settings are documented in
 * docs/configuration.md. */
#ifndef WARREN_WORKER_SETTINGS_H
#define WARREN_WORKER_SETTINGS_H

struct net_pool_config;

/* Hands the jail runtime its host settings (state_dir,
 * jail_cgroup_parent, jail_disk_cache_dir, jail_init_path, jail_uid_dir,
 * jail_uid_base) and lib/templates its folders and tools (templates_dir,
 * template_cache_dir, agent_binary, template_builder). Call once at start,
 * before any sandbox or template work; tests that set WARREN_* settings
 * in-process call it after setting them. */
void worker_settings__configure_libraries(void);

/* Fills config from slot_netns_prefix, slot_link_prefix, slot_cidr,
 * uplink_interface, sandbox_nameserver, egress_resolver(_port),
 * egress_proxy_http_port, egress_proxy_tls_port, slot_precreate, slot_max,
 * net_never_allow, egress_max_connections, egress_slot_max_connections and
 * egress_idle_timeout_s. never_allow also gets the addresses of the
 * platform's PostgreSQL and Kafka endpoints (pg_url, kafka_brokers),
 * resolved now. The strings live until exit. */
void worker_settings__net_pool(struct net_pool_config *config);

#endif
