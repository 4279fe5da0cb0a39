/* clock: the two clocks warren uses. Monotonic for durations and
 * deadlines, realtime (milliseconds since the epoch) for stored times. */
#ifndef WARREN_CLOCK_H
#define WARREN_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

uint64_t clock__monotonic_ns(void);
uint64_t clock__monotonic_ms(void);
int64_t clock__realtime_ms(void);
/* *out = now on `clock` + after_ns, normalised: an absolute deadline for
 * pthread_cond_timedwait (CLOCK_REALTIME unless the condition variable
 * was set to another clock). */
void clock__timespec_after(clockid_t clock, uint64_t after_ns, struct timespec *out);
/* Formats ms since the epoch as RFC 3339 UTC ("2026-11-26T23:30:00.123Z"). */
void clock__format_rfc3339(int64_t realtime_ms, char out[32]);
/* Parses "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)" (RFC 3339 section
 * 5.6) into ms since the epoch. false on any deviation. Pure. */
bool clock__parse_rfc3339(const char *s, int64_t *out_ms);

#endif
