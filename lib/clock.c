#include "warren/clock.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
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

/* Parses "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)" (RFC 3339 section
 * 5.6) into ms since the epoch. Returns false on any deviation. */
bool clock__parse_rfc3339(const char *s, int64_t *out_ms)
{
	int year, month, day, hour, minute, second, consumed = 0;
	int64_t millis = 0, offset_s = 0;
	struct tm tm = {0};
	const char *p;

	if (strlen(s) < 20 || strlen(s) > 35)
		return false;
	for (int i = 0; i < 19; i++) {
		bool digit_slot = !(i == 4 || i == 7 || i == 10 || i == 13 || i == 16);
		if (digit_slot && !isdigit((unsigned char)s[i]))
			return false;
	}
	if (sscanf(s, "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%n", &year, &month, &day, &hour, &minute,
		   &second, &consumed) != 6 ||
	    consumed != 19)
		return false;
	if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 ||
	    second > 60)
		return false;
	p = s + 19;
	if (*p == '.') {
		int digits = 0;
		p++;
		while (isdigit((unsigned char)*p)) {
			if (digits < 3)
				millis = millis * 10 + (*p - '0');
			digits++;
			p++;
		}
		if (digits == 0)
			return false;
		for (; digits < 3; digits++)
			millis *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) || p[3] != ':' ||
		    !isdigit((unsigned char)p[4]) || !isdigit((unsigned char)p[5]))
			return false;
		oh = (p[1] - '0') * 10 + (p[2] - '0');
		om = (p[4] - '0') * 10 + (p[5] - '0');
		if (oh > 23 || om > 59)
			return false;
		offset_s = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return false;
	}
	if (*p != '\0')
		return false;
	tm.tm_year = year - 1900;
	tm.tm_mon = month - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = minute;
	tm.tm_sec = second;
	*out_ms = ((int64_t)timegm(&tm) - offset_s) * 1000 + millis;
	return true;
}
