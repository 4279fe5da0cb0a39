/* `warren up|down|status`: the whole stack on this machine (scripts/stack
 * does the orchestration; this finds it and runs it): WARREN_SOURCE_DIR's,
 * else the install's (<prefix>/share/warren/scripts/stack, with the
 * binaries next to this one), else the source tree this was built from.
 * `up` leaves the stack's settings in <WARREN_HOME>/warren.conf, which the
 * other subcommands use when nothing else configures them. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "warren/binary_path.h"
#include "warren/config.h"

void cli_up__use_stack_settings(void)
{
	const char *home = getenv("WARREN_HOME");
	char path[PATH_MAX];

	if (getenv("WARREN_CONFIG") || getenv("WARREN_PG_URL") ||
	    access(CONFIG_DEFAULT_PATH, F_OK) == 0)
		return;
	if (snprintf(path, sizeof(path), "%s/warren.conf",
		     home && *home ? home : "/var/lib/warren") >= (int)sizeof(path))
		return;
	if (access(path, R_OK) == 0)
		setenv("WARREN_CONFIG", path, 1);
}

static int cli_up__exec(const char *verb)
{
	char script[PATH_MAX], self[PATH_MAX];
	const char *source = getenv("WARREN_SOURCE_DIR");

	if (source || binary__find_data("scripts/stack", script, sizeof(script))) {
		snprintf(script, sizeof(script), "%s/scripts/stack",
			 source ? source : WARREN_SOURCE_DIR);
	} else if (binary__find_sibling("warren", self, sizeof(self)) == 0) {
		/* Installed: scripts/stack runs the binaries of this install. */
		*strrchr(self, '/') = '\0';
		setenv("WARREN_BIN_DIR", self, 0);
	}
	execl("/bin/bash", "bash", script, verb, (char *)NULL);
	perror("warren: running scripts/stack");
	return 1;
}

static int cli_up__up(int argc, char **argv)
{
	return cli_up__exec("up");
}

static int cli_up__down(int argc, char **argv)
{
	return cli_up__exec("down");
}

static int cli_up__status(int argc, char **argv)
{
	return cli_up__exec("status");
}

CLI_COMMAND(up, "up", "start PostgreSQL, Kafka, worker, api and proxy on this machine", cli_up__up)
CLI_COMMAND(down, "down", "stop everything `warren up` started", cli_up__down)
CLI_COMMAND(status, "status", "show the stack and the E2B_* settings for it", cli_up__status)
