/* samples: what the benchmarks do with their measured samples, once for
 * all of them. Header only (bench/ has no library of its own).
 *
 * samples__compare_double: qsort(3)'s comparator for doubles, ascending.
 * samples__median: the median of n samples (n >= 1); sorts them in place,
 * and takes the mean of the two middle ones when n is even. */
#ifndef WARREN_BENCH_SAMPLES_H
#define WARREN_BENCH_SAMPLES_H

#include <stdlib.h>

static inline int samples__compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static inline double samples__median(double *samples, int n)
{
	qsort(samples, (size_t)n, sizeof(*samples), samples__compare_double);
	return n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
}

#endif
