/* config_settings: the table of every setting warren reads (one row each:
 * name, type, bounds, default, unit, readers, one line of doc), the value
 * checks by type, and docs/configuration.md's settings section made from
 * the table. tests/common/test_config.c fails when a config__get call in
 * the tree names a setting missing here, or the doc differs. */
#include "warren/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "warren/cidr.h"
#include "warren/net_address.h"

static const struct config_setting config_table[] = {
    {"agent_address", CONFIG_STRING, 0, 0, NULL, NULL, "", "worker", 0,
     "address the worker reaches every sandbox's agent at instead of its slot's (tests without "
     "slots)"},
    {"agent_binary", CONFIG_PATH, 0, 0, NULL, "the build's warren-agent", "", "cli, worker", 0,
     "warren-agent binary copied into templates"},
    {"agent_timeout_ms", CONFIG_INT, 1, 3600000, NULL, "10000", "ms", "worker", 0,
     "how long the worker waits for a sandbox's agent to answer"},
    {"api_ca_file", CONFIG_PATH, 0, 0, NULL, "the system's CA store", "", "cli", 0,
     "CA certificate(s) `warren batch` trusts for an https api_url"},
    {"api_listen", CONFIG_HOST_PORT, 0, 0, NULL, "127.0.0.1:3000", "", "api", 0,
     "address warren-api listens on (port 0: any; the bound port is printed)"},
    {"api_max_body_bytes", CONFIG_INT, 1024, 1073741824, NULL, "1048576", "bytes", "api", 0,
     "request body limit (413 beyond)"},
    {"api_public_url", CONFIG_URL, 0, 0, NULL, "http(s)://<the request's Host>", "", "api", 0,
     "the API's address as clients reach it (the template builder's signed upload URLs)"},
    {"api_threads", CONFIG_INT, 1, 1024, NULL, "8", "", "api", 0, "HTTP thread pool size"},
    {"api_tls_cert_file", CONFIG_PATH, 0, 0, NULL, NULL, "", "api", 0,
     "PEM certificate chain: warren-api serves HTTPS (with api_tls_key_file; unset: HTTP)"},
    {"api_tls_key_file", CONFIG_PATH, 0, 0, NULL, NULL, "", "api", 0,
     "PEM private key of api_tls_cert_file (readable by the service only)"},
    {"api_url", CONFIG_URL, 0, 0, NULL, "http://127.0.0.1:3000", "", "cli", 0,
     "the API `warren batch` talks to"},
    {"builder_group", CONFIG_STRING, 1, 255, NULL, "warren-builders", "", "worker", 0,
     "Kafka consumer group of the template builders"},
    {"create_deadline_ms", CONFIG_INT, 1, 86400000, NULL, "60000", "ms", "api", 0,
     "how long a create waits for its result"},
    {"dev_mode", CONFIG_BOOL, 0, 0, NULL, "false", "", "api, proxy", 0,
     "allows a fixed, logged development token_seed; never in production"},
    {"domain", CONFIG_STRING, 0, 253, NULL, "api: empty; proxy: warren.test", "", "api, proxy", 0,
     "public domain: sandbox hosts are `<port>-<id>.<domain>` (the API's `domain` field; null when "
     "empty)"},
    {"egress_idle_timeout_s", CONFIG_INT, 0, 86400, NULL, "300 (0: 300)", "s", "worker", 0,
     "an idle egress proxy connection is closed after this"},
    {"egress_max_connections", CONFIG_INT, 0, 1048576, NULL, "16384 (0: 16384)", "", "worker", 0,
     "egress proxy connections per host"},
    {"egress_proxy_http_port", CONFIG_INT, 1, 65535, NULL, "3128", "", "worker", 0,
     "egress proxy port for plain HTTP inside each slot"},
    {"egress_proxy_tls_port", CONFIG_INT, 1, 65535, NULL, "3129", "", "worker", 0,
     "egress proxy port for TLS (SNI) inside each slot"},
    {"egress_resolver", CONFIG_IPV4, 0, 0, NULL, "8.8.8.8", "", "worker", 0,
     "upstream DNS resolver the egress proxy asks"},
    {"egress_resolver_port", CONFIG_INT, 1, 65535, NULL, "53", "", "worker", 0, "its port"},
    {"egress_slot_max_connections", CONFIG_INT, 0, 1048576, NULL, "1024 (0: 1024)", "", "worker", 0,
     "egress proxy connections per sandbox"},
    {"guest_kernel", CONFIG_PATH, 0, 0, NULL, NULL, "", "worker", 0,
     "guest kernel (vmlinux) of the vm runtime (guest/kernel/build.sh makes it)"},
    {"host_address", CONFIG_STRING, 0, 255, NULL, "127.0.0.1", "", "worker", 0,
     "address the proxy reaches this host's sandboxes at (recorded in hosts)"},
    {"host_id", CONFIG_STRING, 1, 64, NULL, "the host name", "", "worker", 0,
     "this worker host's id (Kafka topic alphabet; names warren.host.<id>.commands)"},
    {"host_lost_after_s", CONFIG_INT, 1, 86400, NULL, "30", "s", "worker", 0,
     "a host whose heartbeat is older than this is declared lost (its sandboxes failed)"},
    {"jail_cgroup_parent", CONFIG_STRING, 1, 255, NULL, "warren", "", "worker", 0,
     "cgroup (under the worker's delegated subtree) that holds the jails"},
    {"jail_disk_cache_dir", CONFIG_PATH, 0, 0, NULL, "/var/cache/warren/jail-disks", "", "worker",
     0, "cache of the jail runtime's template disks"},
    {"jail_init_path", CONFIG_PATH, 0, 0, NULL,
     "warren-jail-init next to the worker, else /usr/libexec/warren", "", "worker", 0,
     "the jail's init binary"},
    {"jail_uid_base", CONFIG_INT, 65536, 4294967294, NULL, "1073741824", "", "worker", 0,
     "first host uid of the jails' user namespaces"},
    {"jail_uid_dir", CONFIG_PATH, 0, 0, NULL, "/run/warren/jail-uids", "", "worker", 0,
     "reservations of the jails' uid ranges"},
    {"kafka_brokers", CONFIG_STRING, 1, 4096, NULL, "127.0.0.1:59092", "",
     "api, worker, proxy, cli", 0, "bootstrap brokers, HOST:PORT separated by commas"},
    {"kafka_client_id", CONFIG_STRING, 1, 128, NULL, "warren", "", "api, worker, proxy, cli", 0,
     "prefix of every Kafka client id (`<id>-<role>-<host>`)"},
    {"kafka_min_insync_replicas", CONFIG_INT, 1, 1000, NULL, "1", "", "api, worker, cli", 0,
     "min.insync.replicas of the topics warren creates (at most the replication factor; 2 on a "
     "three-broker cluster: a write is acknowledged once two copies have it)"},
    {"kafka_produce_timeout_ms", CONFIG_INT, 1, 3600000, NULL, "5000", "ms", "api", 0,
     "wait for the broker's acknowledgement of a command"},
    {"kafka_replication_factor", CONFIG_INT, 1, 1000, NULL, "1", "", "api, worker, cli", 0,
     "copies of each partition of the topics warren creates (3 on a three-broker cluster)"},
    {"kafka_sasl_mechanism", CONFIG_STRING, 0, 0, "SCRAM-SHA-512|SCRAM-SHA-256", "SCRAM-SHA-512",
     "", "api, worker, proxy, cli", 0, "SASL mechanism with kafka_security_protocol sasl_ssl"},
    {"kafka_sasl_password", CONFIG_STRING, 1, 1024, NULL, NULL, "", "api, worker, proxy, cli",
     CONFIG_SECRET,
     "SASL password of kafka_sasl_username (give it as kafka_sasl_password_file: a file holding "
     "it)"},
    {"kafka_sasl_username", CONFIG_STRING, 1, 255, NULL, NULL, "", "api, worker, proxy, cli", 0,
     "SASL (SCRAM) user this component authenticates as; required with sasl_ssl"},
    {"kafka_security_protocol", CONFIG_STRING, 0, 0, "plaintext|sasl_ssl", "plaintext", "",
     "api, worker, proxy, cli", 0,
     "plaintext (no TLS, no authentication: development only) or sasl_ssl (TLS + SCRAM)"},
    {"kafka_session_timeout_ms", CONFIG_INT, 1, 3600000, NULL, "10000", "ms", "worker", 0,
     "consumer group session timeout"},
    {"kafka_ssl_ca_file", CONFIG_PATH, 0, 0, NULL, "the system's trust store", "",
     "api, worker, proxy, cli", 0,
     "PEM CA certificate(s) the brokers' certificates must chain to (sasl_ssl; host names are "
     "verified)"},
    {"kafka_start_wait_ms", CONFIG_INT, 0, 3600000, NULL, "30000", "ms", "api", 0,
     "wait at start for the result consumer's partition assignment"},
    {"kafka_topic_prefix", CONFIG_STRING, 0, 128, NULL, "", "", "api, worker, proxy, cli", 0,
     "prepended to every topic name; every component of a deployment must use the same"},
    {"log_level", CONFIG_STRING, 0, 0, "debug|info|warn|error", "info", "", "all", 0,
     "lowest level logged to stderr"},
    {"metrics_interval_ms", CONFIG_INT, 0, 3600000, NULL, "5000", "ms", "worker", 0,
     "how often the worker samples each sandbox's CPU, memory and disk (0: never)"},
    {"metrics_listen", CONFIG_HOST_PORT, 0, 0, NULL, "", "", "api, worker, proxy", 0,
     "address of the Prometheus /metrics listener (empty: none)"},
    {"metrics_retention_s", CONFIG_INT, 0, 31536000, NULL, "86400", "s", "worker", 0,
     "how long sandbox metrics samples are kept"},
    {"migrations_dir", CONFIG_PATH, 0, 0, NULL,
     "the source tree's migrations/, else <prefix>/share/warren/migrations", "", "cli", 0,
     "folder of the SQL migrations `warren migrate` applies"},
    {"net_never_allow", CONFIG_CIDR_LIST, 0, 0, NULL, "", "", "api, worker", 0,
     "blocks no sandbox may reach whatever its policy says, added to the built-in set (e.g. the "
     "PostgreSQL and Kafka networks)"},
    {"operation_deadline_ms", CONFIG_INT, 1, 86400000, NULL, "15000", "ms", "api", 0,
     "how long a kill, network update or resume waits for its result"},
    {"pause_timeout_ms", CONFIG_INT, 1, 600000, NULL, "5000", "ms", "worker", 0,
     "how long a pause (freeze) or resume (thaw) may take"},
    {"pg_checkout_timeout_ms", CONFIG_INT, 0, 3600000, NULL, "10000", "ms",
     "api, worker, proxy, cli", 0, "wait for a free pooled PostgreSQL connection"},
    {"pg_password", CONFIG_STRING, 1, 1024, NULL, NULL, "", "api, worker, proxy, cli",
     CONFIG_SECRET,
     "password of this component's PostgreSQL role (give it as pg_password_file; overrides the "
     "url's)"},
    {"pg_pool_size", CONFIG_INT, 1, 1000, NULL, "api: 8; proxy: proxy_threads + 1; others: 4", "",
     "api, worker, proxy", 0, "PostgreSQL connections per process"},
    {"pg_ssl_mode", CONFIG_STRING, 0, 0, "disable|allow|prefer|require|verify-ca|verify-full",
     "the url's, else libpq's (prefer)", "", "api, worker, proxy, cli", 0,
     "libpq sslmode; verify-full in production (docs/transport-security.md)"},
    {"pg_ssl_root_cert", CONFIG_PATH, 0, 0, NULL, "the url's, else ~/.postgresql/root.crt", "",
     "api, worker, proxy, cli", 0,
     "CA certificate(s) that sign the PostgreSQL server's certificate"},
    {"pg_start_wait_ms", CONFIG_INT, 0, 3600000, NULL, "10000", "ms", "api", 0,
     "how long start-up waits for PostgreSQL before serving (503 meanwhile)"},
    {"pg_url", CONFIG_STRING, 1, 4096, NULL,
     "api, proxy: postgresql://postgres@127.0.0.1:55432/postgres; worker, cli: required", "",
     "api, worker, proxy, cli", CONFIG_SECRET,
     "libpq connection URL (holds the password: prefer pg_url_file)"},
    {"proxy_auto_resume_timeout_s", CONFIG_INT, 1, 86400, NULL, "300", "s", "proxy", 0,
     "the timeout a sandbox woken by a request (autoResume) gets"},
    {"proxy_auto_resume_wait_ms", CONFIG_INT, 0, 600000, NULL, "10000", "ms", "proxy", 0,
     "how long a request for a paused autoResume sandbox waits for it to run"},
    {"proxy_cache_negative_ttl_ms", CONFIG_INT, 0, 3600000, NULL, "1000", "ms", "proxy", 0,
     "how long an unknown sandbox stays cached"},
    {"proxy_cache_stale_ms", CONFIG_INT, 0, 3600000, NULL, "10000", "ms", "proxy", 0,
     "how long a cached route may be served while PostgreSQL is unreachable"},
    {"proxy_cache_ttl_ms", CONFIG_INT, 0, 3600000, NULL, "2000", "ms", "proxy", 0,
     "how long a sandbox's route stays cached"},
    {"proxy_connect_timeout_ms", CONFIG_INT, 1, 3600000, NULL, "5000", "ms", "proxy", 0,
     "connect timeout toward a sandbox"},
    {"proxy_forwarded_proto", CONFIG_STRING, 0, 0, "http|https", "http", "", "proxy", 0,
     "X-Forwarded-Proto sent to sandboxes (https behind a TLS terminator)"},
    {"proxy_header_timeout_s", CONFIG_INT, 1, 3600, NULL, "10", "s", "proxy", 0,
     "time a client has to send a request head"},
    {"proxy_idle_timeout_s", CONFIG_INT, 1, 86400, NULL, "60", "s", "proxy", 0,
     "idle keep-alive connection closed after this"},
    {"proxy_io_timeout_s", CONFIG_INT, 1, 86400, NULL, "300", "s", "proxy", 0,
     "a connection with no traffic either way is closed after this"},
    {"proxy_kafka_events", CONFIG_BOOL, 0, 0, NULL, "true", "", "proxy", 0,
     "drop cached routes on result events from Kafka"},
    {"proxy_listen", CONFIG_HOST_PORT, 0, 0, NULL, "127.0.0.1:3002", "", "proxy", 0,
     "address warren-proxy listens on"},
    {"proxy_max_connections", CONFIG_INT, 1, 1048576, NULL, "10000", "", "proxy", 0,
     "client connections per proxy thread"},
    {"proxy_max_conns_per_sandbox", CONFIG_INT, 1, 1048576, NULL, "1000", "", "proxy", 0,
     "concurrent connections to one sandbox"},
    {"proxy_max_head_bytes", CONFIG_INT, 1024, 65536, NULL, "16384", "bytes", "proxy", 0,
     "largest request head accepted"},
    {"proxy_ops_per_ip", CONFIG_INT, 1, 1000000000000, NULL, "40000", "", "proxy", 0,
     "requests per client IP per window"},
    {"proxy_ops_pg_url", CONFIG_STRING, 0, 4096, NULL, "pg_url", "", "proxy", CONFIG_SECRET,
     "PostgreSQL of the shared per-IP limit"},
    {"proxy_ops_shared", CONFIG_BOOL, 0, 0, NULL, "true", "", "proxy", 0,
     "share the per-IP limit between proxies through PostgreSQL (false: per instance)"},
    {"proxy_ops_window_s", CONFIG_INT, 1, 86400, NULL, "60", "s", "proxy", 0,
     "window of proxy_ops_per_ip"},
    {"proxy_threads", CONFIG_INT, 1, 1024, NULL, "2", "", "proxy", 0, "proxy event-loop threads"},
    {"proxy_tls_cert_file", CONFIG_PATH, 0, 0, NULL, NULL, "", "proxy", 0,
     "PEM certificate chain for *.<domain>: warren-proxy also serves HTTPS on proxy_tls_listen "
     "(reloaded on SIGHUP)"},
    {"proxy_tls_key_file", CONFIG_PATH, 0, 0, NULL, NULL, "", "proxy", 0,
     "PEM private key of proxy_tls_cert_file (readable by the service only)"},
    {"proxy_tls_listen", CONFIG_HOST_PORT, 0, 0, NULL, NULL, "", "proxy", 0,
     "address of warren-proxy's HTTPS listener (with proxy_tls_cert_file and "
     "proxy_tls_key_file; unset: none)"},
    {"runtime", CONFIG_STRING, 0, 0, "vm|jail", "probed: vm with hardware KVM, else jail", "",
     "worker", 0, "force this host's sandbox runtime"},
    {"sandbox_cpu_count", CONFIG_INT, 1, 1024, NULL, "2", "", "api, worker", 0,
     "vCPUs of a sandbox whose template sets none (the API reports it as cpuCount)"},
    {"sandbox_disk_max_mb", CONFIG_INT, 1, 16777216, NULL, "10240", "MiB", "worker", 0,
     "largest disk a jail sandbox may grow"},
    {"sandbox_disk_mb", CONFIG_INT, 1, 16777216, NULL, "1024", "MiB", "api", 0,
     "diskSizeMB the API reports for sandboxes"},
    {"sandbox_log_interval_ms", CONFIG_INT, 0, 3600000, NULL, "1000", "ms", "worker", 0,
     "how often the worker copies sandboxes' console lines into their logs (0: never)"},
    {"sandbox_log_max_lines", CONFIG_INT, 0, 10000000, NULL, "10000", "", "worker", 0,
     "console lines kept per sandbox"},
    {"sandbox_log_retention_s", CONFIG_INT, 0, 31536000, NULL, "604800", "s", "worker", 0,
     "how long a sandbox's logs are kept after it ended"},
    {"sandbox_memory_mb", CONFIG_INT, 1, 16777216, NULL, "512", "MiB", "api, worker", 0,
     "memory of a sandbox whose template sets none (the API reports it as memoryMB)"},
    {"sandbox_nameserver", CONFIG_IPV4, 0, 0, NULL, "8.8.8.8", "", "worker", 0,
     "nameserver written into sandboxes' resolv.conf"},
    {"sandbox_pids_max", CONFIG_INT, 1, 4194304, NULL, "1024", "", "worker", 0,
     "processes per sandbox (pids cgroup)"},
    {"slot_cidr", CONFIG_CIDR, 0, 0, NULL, "10.11.0.0/16", "", "api, worker", 0,
     "address range of the network slots (sandboxes); never reachable from a sandbox"},
    {"slot_link_prefix", CONFIG_STRING, 1, 9, NULL, "wslot", "", "worker", 0,
     "name prefix of the slots' links"},
    {"slot_max", CONFIG_INT, 1, 65536, NULL, "1024", "", "worker", 0,
     "most network slots on this host"},
    {"slot_netns_prefix", CONFIG_STRING, 1, 32, NULL, "warren-slot-", "", "worker", 0,
     "name prefix of the slots' network namespaces"},
    {"slot_precreate", CONFIG_INT, 0, 65536, NULL, "8", "", "worker", 0,
     "slots made ahead of demand"},
    {"slots", CONFIG_BOOL, 0, 0, NULL, "true", "", "worker", 0,
     "network slots (false is refused: every sandbox needs its own)"},
    {"snapshot_deadline_ms", CONFIG_INT, 1, 86400000, NULL, "120000", "ms", "api", 0,
     "how long a pause or snapshot (createSnapshot, fork) waits for its result: a vm sandbox's "
     "guest memory is written to disk"},
    {"snapshot_quota_mb", CONFIG_INT, 0, 1073741824, NULL, "10240", "MiB", "api", 0,
     "storage one team's snapshots may hold on worker hosts (createSnapshot; docs/api.md)"},
    {"start_cmd_timeout_ms", CONFIG_INT, 1, 3600000, NULL, "50000", "ms", "worker", 0,
     "how long a create waits for its template's ready command"},
    {"state_dir", CONFIG_PATH, 0, 0, NULL, "/var/lib/warren/sandboxes", "", "worker", 0,
     "per-sandbox state (disks, sockets)"},
    {"team_template_max", CONFIG_INT, 0, 1000000, NULL, "100", "", "api", 0,
     "custom templates per team (403 beyond)"},
    {"template_build_attempts", CONFIG_INT, 1, 100, NULL, "2", "", "worker", 0,
     "claims of a build by workers before it ends in error"},
    {"template_build_image", CONFIG_BOOL, 0, 0, NULL, "true", "", "worker", 0,
     "a build makes the template's rootfs.ext4 (the vm runtime's disk)"},
    {"template_build_max_poll_ms", CONFIG_INT, 1, 86400000, NULL, "21600000", "ms", "worker", 0,
     "the builders' Kafka max.poll.interval: the longest a build may run"},
    {"template_build_step_timeout_s", CONFIG_INT, 1, 86400, NULL, "1800", "s", "worker", 0,
     "the longest one build step may run"},
    {"template_builder", CONFIG_PATH, 0, 0, NULL, "guest/rootfs/build-template.sh", "",
     "cli, worker", 0, "script that builds a template"},
    {"template_builds", CONFIG_BOOL, 0, 0, NULL, "true", "", "worker", 0,
     "this worker takes template builds"},
    {"template_cache_dir", CONFIG_PATH, 0, 0, NULL,
     "$XDG_CACHE_HOME/warren/templates, else ~/.cache/warren/templates", "", "cli, worker", 0,
     "cache of template builds"},
    {"template_layer_cache", CONFIG_BOOL, 0, 0, NULL, "true", "", "worker", 0,
     "build steps are cached by content (a rebuild reuses unchanged layers)"},
    {"template_prune_interval_ms", CONFIG_INT, 1000, 86400000, NULL, "60000", "ms", "worker", 0,
     "how often deleted templates are removed from this host"},
    {"template_registry_insecure", CONFIG_STRING, 0, 4096, NULL, "", "", "worker", 0,
     "comma-separated registries (host[:port]) that fromImage pulls from without TLS verification "
     "(plain HTTP allowed)"},
    {"template_registry_timeout_s", CONFIG_INT, 1, 86400, NULL, "600", "s", "worker", 0,
     "how long pulling and unpacking a fromImage image may take"},
    {"template_upload_max_bytes", CONFIG_INT, 1, 1099511627776, NULL, "1073741824", "bytes", "api",
     0, "the largest file upload of a template build"},
    {"template_uploads_dir", CONFIG_PATH, 0, 0, NULL, "/var/lib/warren/template-uploads", "",
     "api, worker", 0,
     "where uploaded build files are kept (both the API and the workers must see it)"},
    {"templates_dir", CONFIG_PATH, 0, 0, NULL, "/var/lib/warren/templates", "", "cli, worker", 0,
     "built templates"},
    {"token_seed", CONFIG_STRING, 16, 4096, NULL, "required", "", "api, worker, proxy",
     CONFIG_SECRET,
     "server seed of derived tokens (at least 16 characters; the same on every component)"},
    {"uplink_interface", CONFIG_STRING, 1, 15, NULL, "every link that is not a slot's", "",
     "worker", 0, "interface sandboxes' traffic is masqueraded toward"},
    {"vm_cgroup_parent", CONFIG_STRING, 1, 255, NULL, "warren-vm", "", "worker", 0,
     "cgroup (under the worker's delegated subtree) that holds the VMMs"},
    {"vm_cpu_profile", CONFIG_STRING, 0, 0, "baseline|host",
     "host with hardware KVM, else baseline", "", "worker", 0, "CPUID profile of the guests"},
    {"vm_disk_copy", CONFIG_BOOL, 0, 0, NULL, "false", "", "worker", 0,
     "full copy of the template disk instead of a copy-on-write overlay"},
    {"vm_io_poll_us", CONFIG_INT, 0, 1000000, NULL, "0", "µs", "worker", 0,
     "the VMM's I/O thread busy-polls this long before it sleeps (0: never)"},
    {"vm_jail", CONFIG_BOOL, 0, 0, NULL, "true when run as root", "", "worker", 0,
     "run each warren-vmm in its own jail (chroot, uid, namespaces)"},
    {"vm_jail_uid_base", CONFIG_INT, 0, 4000000000, NULL, "1500000000", "", "worker", 0,
     "first host uid of the jailed VMMs"},
    {"vm_snapshot_timeout_ms", CONFIG_INT, 1000, 3600000, NULL, "120000", "ms", "worker", 0,
     "how long warren-vmm may take to write a vm sandbox's snapshot when it is paused"},
    {"vmm_binary", CONFIG_PATH, 0, 0, NULL, "warren-vmm next to the worker, else /usr/bin", "",
     "worker", 0, "the VMM binary"},
    {"volume_quota_count", CONFIG_INT, 0, 1000000, NULL, "20", "", "api", 0,
     "volumes one team may hold (docs/volumes.md)"},
    {"volume_quota_mb", CONFIG_INT, 0, 1073741824, NULL, "20480", "MiB", "api", 0,
     "total size of the volumes one team may hold"},
    {"volume_size_mb", CONFIG_INT, 16, 16777216, NULL, "1024", "MiB", "api", 0,
     "size limit of every new volume (its ext4 image)"},
    {"volumes_dir", CONFIG_PATH, 0, 0, NULL, "/var/lib/warren/volumes", "", "worker", 0,
     "where the worker keeps the volumes' ext4 images and mounts them"},
    {"warm_pool", CONFIG_STRING, 0, 4096, NULL, "", "", "worker", 0,
     "sandboxes kept started ahead, per template: template:count[,template:count...] (counts "
     "0..1000)"},
    {"worker_capacity", CONFIG_INT, 0, 100000, NULL,
     "derived (0: derived from memory, CPUs and slot_max)", "", "worker", 0,
     "sandboxes this host runs at once"},
    {"worker_cpu_overcommit", CONFIG_INT, 1, 100000, NULL, "256", "", "worker", 0,
     "derived capacity: online CPUs x this / sandbox_cpu_count"},
    {"worker_create_concurrency", CONFIG_INT, 1, 256, NULL, "16", "", "worker", 0,
     "creates in flight at once on this host"},
    {"worker_group", CONFIG_STRING, 1, 255, NULL, "warren-workers", "", "worker", 0,
     "Kafka consumer group of the shared create topic"},
    {"worker_memory_overcommit", CONFIG_INT, 1, 1000, NULL, "8", "", "worker", 0,
     "derived capacity: memory MiB x this / sandbox_memory_mb"},
};

#define CONFIG_TABLE_LEN (sizeof(config_table) / sizeof(config_table[0]))

const struct config_setting *config__settings(size_t *count)
{
	*count = CONFIG_TABLE_LEN;
	return config_table;
}

const struct config_setting *config__setting(const char *name)
{
	for (size_t i = 0; i < CONFIG_TABLE_LEN; i++)
		if (!strcmp(config_table[i].name, name))
			return &config_table[i];
	return NULL;
}

/* Levenshtein distance of a and b, both shorter than 64 characters (longer
 * names are never close to a setting: returns 64). */
static size_t config__distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[64], diagonal, above;

	if (la >= 64 || lb >= 64)
		return 64;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		diagonal = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t best = diagonal + (a[i - 1] != b[j - 1]);

			above = row[j];
			if (above + 1 < best)
				best = above + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diagonal = above;
			row[j] = best;
		}
	}
	return row[lb];
}

const char *config__suggest(const char *name)
{
	const char *best = NULL;
	size_t best_distance = 4;

	for (size_t i = 0; i < CONFIG_TABLE_LEN; i++) {
		size_t d = config__distance(name, config_table[i].name);

		if (d < best_distance) {
			best_distance = d;
			best = config_table[i].name;
		}
	}
	return best;
}

static bool config__in_choices(const char *choices, const char *value)
{
	size_t len = strlen(value);

	for (const char *p = choices; *p; p += strcspn(p, "|"), p += *p == '|') {
		if (strcspn(p, "|") == len && !strncmp(p, value, len))
			return true;
	}
	return false;
}

static int config__validate_int(const struct config_setting *s, const char *value, char *err,
				size_t err_len)
{
	char *end;
	long long parsed;

	errno = 0;
	parsed = strtoll(value, &end, 10);
	if (end == value || *end || errno) {
		snprintf(err, err_len, "%s: '%s' is not a whole number", s->name, value);
		return -EINVAL;
	}
	if (parsed < s->min || parsed > s->max) {
		snprintf(err, err_len, "%s: %lld is outside %lld..%lld", s->name, parsed,
			 (long long)s->min, (long long)s->max);
		return -EINVAL;
	}
	return 0;
}

static int config__validate_string(const struct config_setting *s, const char *value, char *err,
				   size_t err_len)
{
	size_t len = strlen(value);

	if (s->choices && !config__in_choices(s->choices, value)) {
		snprintf(err, err_len, "%s: '%s' is not one of %s", s->name, value, s->choices);
		return -EINVAL;
	}
	if (len < (size_t)s->min || (s->max && len > (size_t)s->max)) {
		snprintf(err, err_len, "%s: %zu characters, must be %lld..%lld", s->name, len,
			 (long long)s->min, (long long)(s->max ? s->max : 65536));
		return -EINVAL;
	}
	return 0;
}

int config__validate(const struct config_setting *s, const char *value, char *err, size_t err_len)
{
	struct cidr block;
	struct in_addr ipv4;
	char host[256];
	uint16_t port;
	const char *why = NULL;

	for (const char *p = value; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			why = "holds a control character";
	if (!why) {
		switch (s->type) {
		case CONFIG_INT:
			return config__validate_int(s, value, err, err_len);
		case CONFIG_STRING:
			return config__validate_string(s, value, err, err_len);
		case CONFIG_PATH:
			why = *value ? NULL : "is empty (a path is needed)";
			break;
		case CONFIG_BOOL: {
			bool ignored;

			why = config__parse_bool(value, &ignored)
				  ? "is not a boolean (true/false, yes/no, on/off, 1/0)"
				  : NULL;
			break;
		}
		case CONFIG_HOST_PORT:
			why = address__parse_host_port(value, host, sizeof(host), &port)
				  ? "is not HOST:PORT"
				  : NULL;
			break;
		case CONFIG_IPV4:
			why =
			    inet_pton(AF_INET, value, &ipv4) == 1 ? NULL : "is not an IPv4 address";
			break;
		case CONFIG_CIDR:
			why = cidr__parse(value, &block) ? "is not an address block (a.b.c.d/n)"
							 : NULL;
			break;
		case CONFIG_CIDR_LIST: {
			struct cidr list[64];

			why = cidr__parse_list(value, list, 64, NULL) < 0
				  ? "is not a list of address blocks (at most 64)"
				  : NULL;
			break;
		}
		case CONFIG_URL:
			why = strstr(value, "://") && value[0] != ':'
				  ? NULL
				  : "is not a URL (scheme://...)";
			break;
		}
	}
	if (!why)
		return 0;
	snprintf(err, err_len, "%s: '%s' %s", s->name,
		 s->flags & CONFIG_SECRET ? "(secret)" : value, why);
	return -EINVAL;
}

static const char *config__type_name(const struct config_setting *s)
{
	static const char *const names[] = {
	    [CONFIG_STRING] = "string",
	    [CONFIG_PATH] = "path",
	    [CONFIG_INT] = "integer",
	    [CONFIG_BOOL] = "boolean",
	    [CONFIG_HOST_PORT] = "HOST:PORT",
	    [CONFIG_IPV4] = "IPv4 address",
	    [CONFIG_CIDR] = "CIDR",
	    [CONFIG_CIDR_LIST] = "CIDR list",
	    [CONFIG_URL] = "URL",
	};

	return s->choices ? s->choices : names[s->type];
}

/* Markdown cell text: a '|' would end the cell. */
static void config__cell(FILE *out, const char *text)
{
	for (; *text; text++) {
		if (*text == '|')
			fputs("\\|", out);
		else
			fputc(*text, out);
	}
}

void config__write_markdown(FILE *out)
{
	fputs("| name | type | default | unit | read by | meaning |\n", out);
	fputs("|---|---|---|---|---|---|\n", out);
	for (size_t i = 0; i < CONFIG_TABLE_LEN; i++) {
		const struct config_setting *s = &config_table[i];

		fprintf(out, "| `%s`%s | ", s->name, s->flags & CONFIG_SECRET ? " (secret)" : "");
		config__cell(out, config__type_name(s));
		if (s->type == CONFIG_INT)
			fprintf(out, " %lld..%lld", (long long)s->min, (long long)s->max);
		fputs(" | ", out);
		if (!s->default_text)
			fputs("unset", out);
		else if (!*s->default_text)
			fputs("empty", out);
		else
			config__cell(out, s->default_text);
		fprintf(out, " | %s | %s | ", s->unit, s->readers);
		config__cell(out, s->doc);
		fputs(" |\n", out);
	}
}
