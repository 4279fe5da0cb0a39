/* cli: the `warren` command. Each subcommand lives in its own file and
 * registers itself with CLI_COMMAND, so adding one never edits main.c. */
#ifndef WARREN_CLI_H
#define WARREN_CLI_H

struct cli_command {
	const char *name;		   /* first word after `warren` */
	const char *summary;		   /* one line for `warren help` */
	int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
	struct cli_command *next;
};

void cli__register(struct cli_command *command);

#define CLI_COMMAND(ident, command_name, command_summary, function)                                \
	static struct cli_command cli_command_##ident = {command_name, command_summary, function,  \
							 0};                                       \
	__attribute__((constructor)) static void cli_register_##ident(void)                        \
	{                                                                                          \
		cli__register(&cli_command_##ident);                                               \
	}

/* The settings file `warren up` wrote (<WARREN_HOME or /var/lib/warren>/
 * warren.conf, cli/up.c) becomes WARREN_CONFIG when nothing else
 * configures this process: WARREN_CONFIG and WARREN_PG_URL unset and no
 * /etc/warren/warren.conf. So `warren admin ...` finds the stack that
 * `warren up` started. */
void cli_up__use_stack_settings(void);

#endif
