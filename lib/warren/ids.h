/* ids: identifiers in E2B's formats, from the kernel's CSPRNG. */
#ifndef WARREN_IDS_H
#define WARREN_IDS_H

#include <stdbool.h>
#include <stddef.h>

#define IDS_SANDBOX_ID_LEN 21 /* "i" + 20 of [a-z0-9] */
#define IDS_UUID_LEN	   36

/* Fills buf with n random bytes (getrandom). Returns 0 or -errno. */
int ids__random_bytes(void *buf, size_t n);
/* Writes a new sandbox id ("i" + 20 chars of [a-z0-9]) and a NUL.
 * 0 or -errno (no randomness). */
int ids__sandbox_id(char out[IDS_SANDBOX_ID_LEN + 1]);
/* Writes a new random (v4) UUID in lower-case text form and a NUL.
 * 0 or -errno. */
int ids__uuid(char out[IDS_UUID_LEN + 1]);
/* True when s has the sandbox id shape. */
bool ids__is_sandbox_id(const char *s);
/* True when s is a UUID in text form (any version, any case). */
bool ids__is_uuid(const char *s);
/* Writes an API key ("e2b_" + 40 hex) and a NUL; out needs 45 bytes.
 * 0 or -errno. */
int ids__api_key(char out[45]);

#endif
