/* `warren config check [FILE]`: validates a configuration file (unknown
 * settings, bad values, unreadable secret files) without starting anything;
 * `warren config doc`: prints the settings table of docs/configuration.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "warren/config.h"

static int cli_config__check(const char *path)
{
	int errors;

	if (!path) {
		path = getenv("WARREN_CONFIG");
		if (!path || !*path)
			path = CONFIG_DEFAULT_PATH;
	}
	errors = config__check_file(path, stdout);
	if (errors < 0) {
		fprintf(stderr, "warren config check: %s: %s\n", path, strerror(-errors));
		return 1;
	}
	if (errors) {
		printf("%s: %d error(s)\n", path, errors);
		return 1;
	}
	printf("%s: ok\n", path);
	return 0;
}

static int cli_config__run(int argc, char **argv)
{
	if (argc >= 2 && argc <= 3 && !strcmp(argv[1], "check"))
		return cli_config__check(argc == 3 ? argv[2] : NULL);
	if (argc == 2 && !strcmp(argv[1], "doc")) {
		config__write_markdown(stdout);
		return 0;
	}
	fprintf(stderr,
		"usage: warren config check [FILE]   validate a configuration file\n"
		"       warren config doc            print the settings table (Markdown)\n");
	return 2;
}

CLI_COMMAND(config, "config", "check a configuration file; print the settings table",
	    cli_config__run)
