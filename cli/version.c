/* `warren version`: prints the build's version. */
#include <stdio.h>

#include "cli.h"

static int cli_version__run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("warren %s\n", WARREN_VERSION);
	return 0;
}

CLI_COMMAND(version, "version", "print the version", cli_version__run)
