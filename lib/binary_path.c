/* binary_path: sibling binaries of the running one (warren/binary_path.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "warren/binary_path.h"

#ifndef WARREN_BIN_TO_LIBEXEC
#define WARREN_BIN_TO_LIBEXEC "../libexec/warren"
#endif
#ifndef WARREN_BIN_TO_DATA
#define WARREN_BIN_TO_DATA "../share/warren"
#endif

/* The folder of the running binary into dir (PATH_MAX). 0 or -errno. */
static int binary__self_dir(char dir[PATH_MAX])
{
	ssize_t n = readlink("/proc/self/exe", dir, PATH_MAX - 1);
	char *slash;

	if (n < 0)
		return -errno;
	dir[n] = '\0';
	slash = strrchr(dir, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	return 0;
}

int binary__find_sibling(const char *name, char *out, size_t out_len)
{
	static const char *const folders[] = {"", "../bin/", WARREN_BIN_TO_LIBEXEC "/"};
	char self[PATH_MAX];
	int rc;

	if (!name || !*name || strchr(name, '/'))
		return -EINVAL;
	if ((rc = binary__self_dir(self)))
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]); i++) {
		if ((size_t)snprintf(out, out_len, "%s/%s%s", self, folders[i], name) >= out_len) {
			rc = -ENAMETOOLONG;
			continue;
		}
		if (access(out, X_OK) == 0)
			return 0;
	}
	return rc;
}

int binary__find_data(const char *relative, char *out, size_t out_len)
{
	char self[PATH_MAX];
	int rc;

	if (!relative || !*relative || relative[0] == '/')
		return -EINVAL;
	if ((rc = binary__self_dir(self)))
		return rc;
	if ((size_t)snprintf(out, out_len, "%s/%s/%s", self, WARREN_BIN_TO_DATA, relative) >=
	    out_len)
		return -ENAMETOOLONG;
	if (!realpath(out, self)) /* also: it exists */
		return -ENOENT;
	if ((size_t)snprintf(out, out_len, "%s", self) >= out_len)
		return -ENAMETOOLONG;
	return 0;
}
