/* agent_paths: turning a client-supplied path into the absolute path the agent
 * operates on (envd: relative paths and "~" are relative to the user's
 * home). Pure and lexical; permission checks happen in the kernel under
 * the user's fsuid (users__fs_enter). */
#ifndef WARREN_AGENT_PATHS_H
#define WARREN_AGENT_PATHS_H

#include <stdbool.h>
#include <stddef.h>

/* Writes the cleaned absolute form of input (joined to home when relative,
 * "~" expanded) to out: no "//", "." or "..", ".." above "/" stays at "/".
 * False when input is empty, holds a control byte, or out is too small. */
bool paths__resolve(const char *input, const char *home, char *out, size_t out_len);
/* The last component of an absolute cleaned path ("/" for "/"). */
const char *paths__basename(const char *path);

#endif
