/* dirs: directories made the way every room needs them. */
#ifndef WARREN_DIRS_H
#define WARREN_DIRS_H

#include <sys/types.h>

/* mkdir -p of dir (absolute): missing parents 0755, dir itself leaf_mode
 * (existing ones are left as they are). 0, -ENAMETOOLONG or -errno. */
int dirs__make(const char *dir, mode_t leaf_mode);

#endif
