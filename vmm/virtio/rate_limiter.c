/* rate_limiter: token buckets (see rate_limiter.h). */
#include "rate_limiter.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void token_bucket__refill(struct token_bucket *bucket, uint64_t now_ns)
{
	uint64_t elapsed_ns, add;

	if (now_ns <= bucket->last_update_ns)
		return;
	elapsed_ns = now_ns - bucket->last_update_ns;
	if (bucket->refill_time_ms == 0) {
		bucket->budget = (int64_t)bucket->size;
		bucket->last_update_ns = now_ns;
		return;
	}
	/* tokens = elapsed * size / refill_time, in 128-bit to avoid overflow */
	add = (uint64_t)((unsigned __int128)elapsed_ns * bucket->size /
			 ((unsigned __int128)bucket->refill_time_ms * 1000000u));
	if (add == 0)
		return; /* keep last_update so fractions accumulate */
	bucket->last_update_ns = now_ns;
	/* budget >= -INT64_MAX/2 and size <= INT64_MAX: compare without overflow */
	if (add >= (uint64_t)INT64_MAX / 2 ||
	    bucket->budget + (int64_t)add >= (int64_t)bucket->size)
		bucket->budget = (int64_t)bucket->size;
	else
		bucket->budget += (int64_t)add;
}

void token_bucket__init(struct token_bucket *bucket, uint64_t size, uint64_t one_time_burst,
			uint64_t refill_time_ms, uint64_t now_ns)
{
	if (size > INT64_MAX / 2)
		size = INT64_MAX / 2;
	bucket->size = size;
	bucket->one_time_burst = one_time_burst;
	bucket->refill_time_ms = refill_time_ms;
	bucket->budget = (int64_t)size;
	bucket->last_update_ns = now_ns;
}

bool token_bucket__consume(struct token_bucket *bucket, uint64_t tokens, uint64_t now_ns)
{
	if (bucket->size == 0)
		return true;
	if (bucket->one_time_burst) {
		if (bucket->one_time_burst >= tokens) {
			bucket->one_time_burst -= tokens;
			return true;
		}
		tokens -= bucket->one_time_burst;
		/* Spend the rest of the burst only if the budget covers the remainder. */
	}
	token_bucket__refill(bucket, now_ns);
	if (tokens > bucket->size) {
		if (bucket->budget < (int64_t)bucket->size)
			return false;
		bucket->one_time_burst = 0;
		bucket->budget -= (int64_t)(tokens > INT64_MAX / 2 ? INT64_MAX / 2 : tokens);
		return true;
	}
	if (bucket->budget < (int64_t)tokens)
		return false;
	bucket->one_time_burst = 0;
	bucket->budget -= (int64_t)tokens;
	return true;
}

uint64_t token_bucket__wait_ns(struct token_bucket *bucket, uint64_t tokens, uint64_t now_ns)
{
	int64_t needed;

	if (bucket->size == 0)
		return 0;
	tokens = tokens > bucket->one_time_burst ? tokens - bucket->one_time_burst : 0;
	if (tokens > bucket->size)
		tokens = bucket->size;
	token_bucket__refill(bucket, now_ns);
	needed = (int64_t)tokens - bucket->budget;
	if (needed <= 0)
		return 0;
	if (bucket->refill_time_ms == 0)
		return 0;
	return (uint64_t)((unsigned __int128)needed * bucket->refill_time_ms * 1000000u /
			  bucket->size) +
	       1;
}

void rate_limiter__init(struct rate_limiter *limiter)
{
	memset(limiter, 0, sizeof(*limiter));
}

static int parse_bucket(const json_t *config, const char *name, struct token_bucket *bucket,
			uint64_t now_ns, char *error, size_t error_size)
{
	const json_t *object = json_object_get(config, name);
	const char *keys[] = {"size", "one_time_burst", "refill_time"};
	int64_t values[3] = {0, 0, 0};

	if (!object || json_is_null(object)) {
		token_bucket__init(bucket, 0, 0, 0, now_ns);
		return 0;
	}
	if (!json_is_object(object)) {
		snprintf(error, error_size, "rate_limiter.%s must be an object", name);
		return -EINVAL;
	}
	for (unsigned i = 0; i < 3; i++) {
		const json_t *value = json_object_get(object, keys[i]);

		if (!value)
			continue;
		if (!json_is_integer(value) || json_integer_value(value) < 0) {
			snprintf(error, error_size,
				 "rate_limiter.%s.%s must be a non-negative integer", name,
				 keys[i]);
			return -EINVAL;
		}
		values[i] = json_integer_value(value);
	}
	if (values[0] > 0 && values[2] == 0) {
		snprintf(error, error_size, "rate_limiter.%s.refill_time must be > 0", name);
		return -EINVAL;
	}
	token_bucket__init(bucket, (uint64_t)values[0], (uint64_t)values[1], (uint64_t)values[2],
			   now_ns);
	return 0;
}

int rate_limiter__configure(struct rate_limiter *limiter, const json_t *config, uint64_t now_ns,
			    char *error, size_t error_size)
{
	struct rate_limiter next;

	if (!json_is_object(config)) {
		snprintf(error, error_size, "rate_limiter must be an object");
		return -EINVAL;
	}
	if (parse_bucket(config, "bandwidth", &next.bandwidth, now_ns, error, error_size) < 0 ||
	    parse_bucket(config, "ops", &next.ops, now_ns, error, error_size) < 0)
		return -EINVAL;
	*limiter = next;
	return 0;
}

bool rate_limiter__consume(struct rate_limiter *limiter, uint64_t bytes, uint64_t now_ns)
{
	struct token_bucket saved = limiter->bandwidth;

	if (!token_bucket__consume(&limiter->bandwidth, bytes, now_ns))
		return false;
	if (!token_bucket__consume(&limiter->ops, 1, now_ns)) {
		limiter->bandwidth = saved; /* all or nothing */
		return false;
	}
	return true;
}

static void token_bucket__refund(struct token_bucket *bucket, uint64_t tokens)
{
	if (bucket->size == 0)
		return;
	if (tokens >= bucket->size || bucket->budget + (int64_t)tokens >= (int64_t)bucket->size)
		bucket->budget = (int64_t)bucket->size;
	else
		bucket->budget += (int64_t)tokens;
}

void rate_limiter__refund(struct rate_limiter *limiter, uint64_t bytes, bool operation)
{
	token_bucket__refund(&limiter->bandwidth, bytes);
	if (operation)
		token_bucket__refund(&limiter->ops, 1);
}

uint64_t rate_limiter__wait_ns(struct rate_limiter *limiter, uint64_t bytes, uint64_t now_ns)
{
	uint64_t a = token_bucket__wait_ns(&limiter->bandwidth, bytes, now_ns);
	uint64_t b = token_bucket__wait_ns(&limiter->ops, 1, now_ns);

	return a > b ? a : b;
}

static json_t *bucket__to_json(const struct token_bucket *bucket)
{
	if (bucket->size == 0)
		return json_null();
	return json_pack("{s:I, s:I, s:I, s:I}", "size", (json_int_t)bucket->size, "one_time_burst",
			 (json_int_t)bucket->one_time_burst, "refill_time",
			 (json_int_t)bucket->refill_time_ms, "budget", (json_int_t)bucket->budget);
}

json_t *rate_limiter__to_json(const struct rate_limiter *limiter)
{
	return json_pack("{s:o, s:o}", "bandwidth", bucket__to_json(&limiter->bandwidth), "ops",
			 bucket__to_json(&limiter->ops));
}
