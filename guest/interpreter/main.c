/* warren-interpreter: the code-interpreter server inside a sandbox
 * (port 49999): runs code in Jupyter kernels for @e2b/code-interpreter.
 * guest/interpreter/README.md, docs/code-interpreter.md. */
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "contexts.h"
#include "server.h"
#include "warren/binary_path.h"
#include "warren/log.h"

#define INTERPRETER_VERSION "0.1.0"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: warren-interpreter [--listen HOST:PORT] [--token-hash sha256:HEX|sha512:HEX]\n"
	    "                          [--cwd DIR] [--kernel-user NAME] [--python PATH]\n"
	    "                          [--runtime-dir DIR] [--startup FILE] [--version]\n"
	    "  --listen       address of the HTTP API (default 0.0.0.0:49999)\n"
	    "  --token-hash   hash of the sandbox access token (env WARREN_AGENT_TOKEN_HASH);\n"
	    "                 none = open (secure=false)\n"
	    "  --cwd          default working directory of the kernels (default /home/user)\n"
	    "  --python       the kernels' python (default /usr/bin/python3)\n"
	    "  --kernel-user  run kernels as this user when started as root (default: user,\n"
	    "                 when it exists)\n"
	    "  --startup      Python file every kernel runs at start (matplotlib charts as\n"
	    "                 data); default: share/warren/interpreter/ipython_startup.py\n"
	    "                 of this install, when there\n");
}

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	stopping = sig;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"token-hash", required_argument, NULL, 't'},
	    {"cwd", required_argument, NULL, 'c'},
	    {"kernel-user", required_argument, NULL, 'u'},
	    {"python", required_argument, NULL, 'p'},
	    {"runtime-dir", required_argument, NULL, 'r'},
	    {"startup", required_argument, NULL, 's'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct server_config server_config = {.listen = "0.0.0.0:49999"};
	struct contexts_config contexts_config = {0};
	const char *token_hash = getenv("WARREN_AGENT_TOKEN_HASH");
	const char *cwd = "/home/user", *user = NULL;
	struct context *default_context;
	char err[256], startup[PATH_MAX];
	int opt, status;

	log__set_component("interpreter");
	contexts_config.kernel.start_timeout_ms = 60000;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'l':
			server_config.listen = optarg;
			break;
		case 't':
			token_hash = optarg;
			break;
		case 'c':
			cwd = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'p':
			contexts_config.kernel.python = optarg;
			break;
		case 'r':
			contexts_config.kernel.runtime_dir = optarg;
			break;
		case 's':
			contexts_config.kernel.startup = optarg;
			break;
		case 'V':
			printf("warren-interpreter %s\n", INTERPRETER_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (token_hash && *token_hash &&
	    !wire__parse_token_hash(token_hash, &server_config.token_hash)) {
		log_error("--token-hash: expected sha256:<64 hex> or sha512:<128 hex>");
		return 2;
	}
	if (!user && geteuid() == 0 && getpwnam("user"))
		user = "user";
	if (access(cwd, X_OK))
		cwd = "/";
	if (!contexts_config.kernel.startup &&
	    !binary__find_data("interpreter/ipython_startup.py", startup, sizeof(startup)))
		contexts_config.kernel.startup = startup;
	contexts_config.kernel.cwd = cwd;
	contexts_config.kernel.user = user;
	contexts_config.zctx = zmq_ctx_new();
	if (!contexts_config.zctx) {
		log_error("zmq_ctx_new failed");
		return 1;
	}
	contexts__init(&contexts_config);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	/* The default context is registered (busy) before the port opens and
	 * its kernel started after: a request that comes meanwhile waits for
	 * it instead of failing. */
	default_context = contexts__create("python", cwd, true, &status, err, sizeof(err));
	if (!default_context) {
		log_error("default context: %s", err);
		return 1;
	}
	if (server__start(&server_config)) {
		log_error("cannot listen on %s", server_config.listen);
		return 1;
	}
	log_info("warren-interpreter %s listening on %s (kernels as %s, cwd %s, start-up file %s)",
		 INTERPRETER_VERSION, server_config.listen, user ? user : "this user", cwd,
		 contexts_config.kernel.startup ? contexts_config.kernel.startup : "none");
	if (contexts__restart_acquired(default_context, err, sizeof(err)))
		log_error("default context: %s (retried at its first use)", err);
	contexts__release(default_context);
	contexts__put(default_context);
	while (!stopping)
		pause();
	log_info("signal %d: stopping", (int)stopping);
	server__stop();
	contexts__shutdown();
	return 0;
}
