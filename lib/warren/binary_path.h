/* binary_path: where warren's helper binaries are, found next to the
 * running one. */
#ifndef WARREN_BINARY_PATH_H
#define WARREN_BINARY_PATH_H

#include <stddef.h>

/* The path of the executable `name` in the running binary's folder
 * (/proc/self/exe), or in ../bin of it (tests run from build/tests,
 * binaries live in build/bin), written to out. 0, -ENOENT (not there or
 * not executable), -ENAMETOOLONG, or -errno of readlink. */
int binary__find_sibling(const char *name, char *out, size_t out_len);

#endif
