/* `warren template build NAME [--force]` and `warren template list`:
 * builds templates with guest/rootfs/build-template.sh and shows the
 * installed ones (guest/rootfs/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifdef WARREN_HAVE_TEMPLATES
#include "warren/templates.h"

static int usage(void)
{
	fprintf(stderr, "usage: warren template build NAME [--force]\n"
			"       warren template list\n"
			"NAME: minimal (busybox + agent, seconds) or base (Debian minbase +\n"
			"python3, curl: minutes, cached by content hash) or\n"
			"code-interpreter-v1 (base + Jupyter kernel, numpy, pandas, matplotlib\n"
			"and warren-interpreter; docs/code-interpreter.md)\n");
	return 2;
}

static int template_build(int argc, char **argv)
{
	const char *name = NULL;
	int force = 0;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0)
			force = 1;
		else if (!name)
			name = argv[i];
		else
			return usage();
	}
	if (!name || !templates__name_valid(name))
		return usage();
	if (strcmp(name, "minimal") != 0 && strcmp(name, "base") != 0 &&
	    strcmp(name, "code-interpreter-v1") != 0) {
		fprintf(stderr, "warren template: unknown template %s (minimal, base or code-interpreter-v1)\n", name);
		return 2;
	}
	return templates__build(name, force) == 0 ? 0 : 1;
}

static int template_list(void)
{
	struct template_info *list;
	size_t count;
	int ret = templates__list(templates__dir(), &list, &count);

	if (ret) {
		fprintf(stderr, "warren template list: %s: %s\n", templates__dir(), strerror(-ret));
		return 1;
	}
	printf("%-12s %-14s %-16s %12s  %s\n", "NAME", "AGENT", "HASH", "SIZE", "BUILT AT");
	for (size_t i = 0; i < count; i++)
		printf("%-12s %-14s %-16.16s %12llu  %s\n", list[i].name, list[i].agent_version,
		       list[i].content_hash, (unsigned long long)list[i].size, list[i].built_at);
	free(list);
	return 0;
}

static int cli_template__run(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "build") == 0)
		return template_build(argc - 2, argv + 2);
	if (argc == 2 && strcmp(argv[1], "list") == 0)
		return template_list();
	return usage();
}
#else
static int cli_template__run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "warren template: built without libwarren-templates\n");
	return 1;
}
#endif

CLI_COMMAND(template, "template", "build or list templates (root filesystems)", cli_template__run)
