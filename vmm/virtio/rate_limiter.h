/* rate_limiter: per-device I/O limits as two token buckets, bandwidth
 * (bytes) and operations, in the manner of Firecracker's rate limiter:
 * each bucket has a size (burst capacity), a refill time (ms to refill
 * from empty to full, i.e. rate = size / refill_time) and a one-time burst
 * spent first and never refilled. A bucket of size 0 is unlimited.
 *
 * JSON (device config "rate_limiter" and the control socket update):
 *   {"bandwidth": {"size": B, "one_time_burst": B, "refill_time": ms},
 *    "ops": {"size": N, "one_time_burst": N, "refill_time": ms}}
 * A missing bucket means unlimited. Not thread-safe: the event loop owns it. */
#ifndef WARREN_VMM_RATE_LIMITER_H
#define WARREN_VMM_RATE_LIMITER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct token_bucket {
	uint64_t size;
	uint64_t one_time_burst; /* remaining */
	uint64_t refill_time_ms;
	int64_t budget; /* may go negative after an oversized request */
	uint64_t last_update_ns;
};

/* Sets the bucket's parameters; it starts full. */
void token_bucket__init(struct token_bucket *bucket, uint64_t size, uint64_t one_time_burst,
			uint64_t refill_time_ms, uint64_t now_ns);
/* Takes `tokens` if available (burst first). A request larger than the
 * size passes when the bucket is full and leaves it in debt. */
bool token_bucket__consume(struct token_bucket *bucket, uint64_t tokens, uint64_t now_ns);
/* Nanoseconds until `tokens` would be available (0 if now). */
uint64_t token_bucket__wait_ns(struct token_bucket *bucket, uint64_t tokens, uint64_t now_ns);

struct rate_limiter {
	struct token_bucket bandwidth;
	struct token_bucket ops;
};

/* Unlimited limiter. */
void rate_limiter__init(struct rate_limiter *limiter);
/* Replaces both buckets from JSON (see above); on error returns -EINVAL
 * with a reason in error[error_size] and leaves the limiter unchanged. */
int rate_limiter__configure(struct rate_limiter *limiter, const json_t *config, uint64_t now_ns,
			    char *error, size_t error_size);
/* Takes one operation of `bytes` from both buckets, or nothing. */
bool rate_limiter__consume(struct rate_limiter *limiter, uint64_t bytes, uint64_t now_ns);
/* Gives back `bytes` (and one operation when `operation`) taken by a
 * consume that turned out larger than needed (e.g. RX charges a full frame
 * before it knows the size). Refunds go to the refilling budget, capped at
 * the bucket size, never to the one-time burst. */
void rate_limiter__refund(struct rate_limiter *limiter, uint64_t bytes, bool operation);
/* Time until rate_limiter__consume(bytes) can succeed. */
uint64_t rate_limiter__wait_ns(struct rate_limiter *limiter, uint64_t bytes, uint64_t now_ns);
/* JSON of the current configuration. */
json_t *rate_limiter__to_json(const struct rate_limiter *limiter);

#endif
