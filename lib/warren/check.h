/* check: invariants that stay checked in release builds (unlike assert,
 * which NDEBUG removes). CHECK(expr) is for what the code relies on and
 * nothing outside the process can make false (a tenant's or a guest's
 * input is validated and answered, never CHECKed): a broken invariant
 * logs "file:line: function: check failed: expr" and aborts, so that a
 * bug stops the process instead of corrupting state. Cheap enough for
 * hot paths (one compare and a predicted branch). */
#ifndef WARREN_CHECK_H
#define WARREN_CHECK_H

_Noreturn void check__fail(const char *file, int line, const char *function,
			   const char *expression);

#define CHECK(expr) ((expr) ? (void)0 : check__fail(__FILE__, __LINE__, __func__, #expr))

#endif
