#include "warren/clock.h"

#include <stdio.h>
#include <time.h>

uint64_t clock__monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t clock__monotonic_ms(void)
{
	return clock__monotonic_ns() / 1000000ull;
}

int64_t clock__realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void clock__timespec_after(clockid_t clock, uint64_t after_ns, struct timespec *out)
{
	clock_gettime(clock, out);
	out->tv_sec += (time_t)(after_ns / 1000000000ull);
	out->tv_nsec += (long)(after_ns % 1000000000ull);
	if (out->tv_nsec >= 1000000000L) {
		out->tv_sec++;
		out->tv_nsec -= 1000000000L;
	}
}

void clock__format_rfc3339(int64_t realtime_ms, char out[32])
{
	time_t seconds = (time_t)(realtime_ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&seconds, &tm);
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03dZ", (int)(realtime_ms % 1000));
}
