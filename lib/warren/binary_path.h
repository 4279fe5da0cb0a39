/* binary_path: where warren's helper binaries are, found next to the
 * running one. */
#ifndef WARREN_BINARY_PATH_H
#define WARREN_BINARY_PATH_H

#include <stddef.h>

/* The path of the executable `name` in the running binary's folder
 * (/proc/self/exe), or in ../bin of it (tests run from build/tests,
 * binaries live in build/bin), or in the install's libexec folder
 * (../libexec/warren of bin/: warren-jail-init, warren-agent), written to
 * out. 0, -ENOENT (not there or not executable), -ENAMETOOLONG, or -errno
 * of readlink. */
int binary__find_sibling(const char *name, char *out, size_t out_len);

/* The path of `relative` (e.g. "migrations", "scripts/stack") inside the
 * data folder of the install the running binary belongs to
 * (<prefix>/share/warren for <prefix>/bin/warren), when it exists. 0,
 * -ENOENT (not an installed binary, or no such file), -ENAMETOOLONG, or
 * -errno of readlink. Relative to the binary: a tree installed with
 * DESTDIR, or moved, still finds its own data. */
int binary__find_data(const char *relative, char *out, size_t out_len);

#endif
