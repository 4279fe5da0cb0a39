/* warren: admin, batch jobs and the quickstart. Dispatches to the
 * subcommands registered with CLI_COMMAND (see cli.h). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "warren/log.h"

static struct cli_command *cli_commands;

void cli__register(struct cli_command *command)
{
	struct cli_command **link = &cli_commands;

	/* Keep the list sorted by name so `warren help` is stable. */
	while (*link && strcmp((*link)->name, command->name) < 0)
		link = &(*link)->next;
	command->next = *link;
	*link = command;
}

static int cli__usage(FILE *out)
{
	fprintf(out, "usage: warren <command> [args]\n\ncommands:\n");
	for (struct cli_command *c = cli_commands; c; c = c->next)
		fprintf(out, "  %-12s %s\n", c->name, c->summary);
	return out == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
	log__set_component("warren");
	if (argc < 2)
		return cli__usage(stderr);
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return cli__usage(stdout);
	if (!strcmp(argv[1], "--version")) {
		printf("warren %s\n", WARREN_VERSION);
		return 0;
	}
	cli_up__use_stack_settings();
	for (struct cli_command *c = cli_commands; c; c = c->next)
		if (!strcmp(c->name, argv[1]))
			return c->run(argc - 1, argv + 1);
	fprintf(stderr, "warren: unknown command '%s'\n", argv[1]);
	return cli__usage(stderr);
}
