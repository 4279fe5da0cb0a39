/* warren-agent: the in-sandbox agent, wire-compatible with E2B's envd for
 * what the npm e2b SDK uses (see README.md). Runs as PID 1's child in a
 * template (or as PID 1 of a jail's pid namespace): it reaps every child. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_version.h"
#include "forward.h"
#include "process.h"
#include "server.h"
#include "watch.h"
#include "warren/log.h"
#include "warren/net_address.h"

static struct MHD_Daemon *daemon_handle;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: warren-agent [--listen HOST:PORT] [--token-hash sha256:HEX|sha512:HEX]\n"
		"                    [--idle-timeout SECONDS] [--gzip-limit BYTES]\n"
		"                    [--forward-loopback|--no-forward-loopback]\n"
		"                    [--forward-active-ms MS] [--version]\n"
		"  --listen      address to serve envd's API on (default %s)\n"
		"  --token-hash  hash of the access token the first /init must carry\n"
		"                (or env WARREN_AGENT_TOKEN_HASH); none = secure=false\n"
		"  --idle-timeout  close a connection with no traffic either way for this\n"
		"                long, streams excepted (default %u)\n"
		"  --gzip-limit  most bytes a gzip upload may decode to (default %llu)\n"
		"  --forward-loopback  make servers listening only on 127.0.0.1 / ::1\n"
		"                reachable at this namespace's other addresses (default:\n"
		"                on when --listen is 0.0.0.0, i.e. in a sandbox)\n"
		"  --forward-active-ms  after the start, /init or a process start, scan\n"
		"                for loopback listeners every second this long; then\n"
		"                every %d s while no process started here runs (default %d)\n"
		"  --version     print the envd-compatible version and exit\n",
		AGENT_DEFAULT_LISTEN, AGENT_IDLE_TIMEOUT_S,
		(unsigned long long)AGENT_MAX_GUNZIP_UPLOAD, FORWARD_IDLE_SCAN_MS / 1000,
		FORWARD_ACTIVE_MS);
}

/* The port of a "HOST:PORT" the server accepted (0 if none). */
static uint16_t listen_port(const char *listen)
{
	char host[64];
	uint16_t port = 0;

	return address__parse_host_port(listen, host, sizeof(host), &port) ? 0 : port;
}

/* True on a machine of its own: started by PID 1 in the initial user
 * namespace (a vm guest's init; a guest kernel without user namespaces has
 * no uid_map and only that one). A jail's agent runs in a user namespace
 * of its own; an agent a test starts on a host is not PID 1's child. */
static bool agent__owns_machine(void)
{
	unsigned long long inside = 1, outside = 1, count = 0;
	FILE *map;
	int fields;

	if (getppid() != 1)
		return false;
	map = fopen("/proc/self/uid_map", "re");
	if (!map)
		return errno == ENOENT;
	fields = fscanf(map, "%llu %llu %llu", &inside, &outside, &count);
	fclose(map);
	return fields == 3 && inside == 0 && outside == 0 && count == 4294967295ull;
}

/* The main thread's loop: reaps children (and, as PID 1, orphans) on
 * SIGCHLD, ignores SIGHUP, returns on SIGTERM/SIGINT. */
static void agent__wait_for_stop(const sigset_t *signals)
{
	siginfo_t info;
	int status;
	pid_t pid;

	for (;;) {
		if (sigwaitinfo(signals, &info) < 0) {
			if (errno == EINTR)
				continue;
			log_error("sigwaitinfo: %s", strerror(errno));
			return;
		}
		if (info.si_signo == SIGCHLD) {
			while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
				process__reaped(pid, status);
			continue;
		}
		if (info.si_signo == SIGHUP)
			continue;
		log_info("signal %d: stopping, killing running processes", info.si_signo);
		return;
	}
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"token-hash", required_argument, NULL, 't'},
	    {"idle-timeout", required_argument, NULL, 'i'},
	    {"gzip-limit", required_argument, NULL, 'g'},
	    {"forward-loopback", no_argument, NULL, 'f'},
	    {"no-forward-loopback", no_argument, NULL, 'n'},
	    {"forward-active-ms", required_argument, NULL, 'a'},
	    {"version", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *listen = AGENT_DEFAULT_LISTEN, *token_hash = getenv("WARREN_AGENT_TOKEN_HASH");
	sigset_t signals;
	char *end;
	long seconds;
	int forward_loopback = -1; /* -1: when listening on 0.0.0.0 */
	long forward_active_ms = FORWARD_ACTIVE_MS;
	int option;

	log__set_component("agent");
	while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (option) {
		case 'l':
			listen = optarg;
			break;
		case 't':
			token_hash = optarg;
			break;
		case 'i':
			seconds = strtol(optarg, &end, 10);
			if (*end || seconds < 1 || seconds > 86400) {
				log_error("--idle-timeout: expected 1..86400 seconds");
				return 2;
			}
			agent.idle_timeout_s = (unsigned int)seconds;
			break;
		case 'g':
			errno = 0;
			agent.gunzip_limit = strtoull(optarg, &end, 10);
			if (errno || *end || optarg[0] == '-' || agent.gunzip_limit == 0) {
				log_error("--gzip-limit: expected a number of bytes > 0");
				return 2;
			}
			break;
		case 'f':
		case 'n':
			forward_loopback = option == 'f' ? 1 : 0;
			break;
		case 'a':
			forward_active_ms = strtol(optarg, &end, 10);
			if (*end || forward_active_ms < 0 || forward_active_ms > 86400000) {
				log_error("--forward-active-ms: expected 0..86400000");
				return 2;
			}
			break;
		case 'v':
			printf("%s\n", AGENT_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (token_hash && *token_hash) {
		if (!wire__parse_token_hash(token_hash, &agent.token_hash)) {
			log_error("--token-hash: expected sha256:<64 hex> or sha512:<128 hex>");
			return 2;
		}
	} else {
		log_warn("no --token-hash: secure=false, the API is open until /init sets a token "
			 "(discouraged)");
	}
	unsetenv("WARREN_AGENT_TOKEN_HASH");
	agent.env_vars = json_object();
	agent.owns_machine = agent__owns_machine();
	if (agent.owns_machine)
		log_info("a machine of its own: /init may set the clock and reseed the random "
			 "generator");

	/* Every thread inherits this mask; the main thread takes the signals. */
	sigemptyset(&signals);
	sigaddset(&signals, SIGCHLD);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	daemon_handle = server__start(listen);
	if (!daemon_handle) {
		log_error("cannot listen on %s", listen);
		return 1;
	}
	log_info("warren-agent %s listening on %s", AGENT_VERSION, listen);
	if (forward_loopback < 0)
		forward_loopback = strncmp(listen, "0.0.0.0:", 8) == 0;
	if (forward_loopback && !forward__start(listen_port(listen), forward_active_ms))
		log_warn("cannot start the loopback forwarder: %s", strerror(errno));

	agent__wait_for_stop(&signals);
	process__kill_all();
	watch__remove_all();
	/* Streams may be blocked in their connection threads: exit without
	 * waiting for them (the kernel closes the sockets). */
	_exit(0);
}
