// The npm e2b SDK against a warren-api whose team has a tiny lifecycle
// limit: the SDK must raise RateLimitError on our 429.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { Sandbox, RateLimitError } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

(async () => {
	let limited = null;
	for (let i = 0; i < 20 && !limited; i++) {
		try {
			// retries: 0 — the SDK otherwise waits out Retry-After and retries.
			await Sandbox.list({ retries: 0, requestTimeoutMs: 10000 }).nextItems();
		} catch (err) {
			limited = err;
		}
	}
	assert.ok(limited, 'no request was rate limited');
	assert.ok(limited instanceof RateLimitError, `expected RateLimitError, got ${limited}`);
	console.log('RateLimitError raised:', limited.message);
})().catch((err) => {
	console.error('sdk_rate_limit: FAILED', err);
	process.exit(1);
});
