/* check: the failure path of CHECK (warren/check.h). */
#include <stdlib.h>

#include "warren/check.h"
#include "warren/log.h"

_Noreturn void check__fail(const char *file, int line, const char *function, const char *expression)
{
	log_error("%s:%d: %s: check failed: %s", file, line, function, expression);
	abort();
}
