// The unchanged npm e2b SDK, configured only by E2B_* variables (E2B_API_URL,
// E2B_API_KEY, E2B_DOMAIN, E2B_SANDBOX_URL = warren-proxy, which routes by the
// SDK's E2b-Sandbox-Id / E2b-Sandbox-Port headers): create a sandbox, run a
// command, write and read a file, kill it. Prints one JSON line per step
// with its duration; exits non-zero on the first failure.
// Env: E2B_SDK_DIR, TEMPLATE (default minimal), CREATE_TIMEOUT_MS.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { Sandbox } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

function step(name, started, extra) {
	console.log(JSON.stringify(Object.assign({ step: name, ms: Date.now() - started }, extra || {})));
}

(async () => {
	const createTimeoutMs = Number(process.env.CREATE_TIMEOUT_MS || 300000);
	let started = Date.now();
	// Guest boot under TCG takes tens of seconds: a long request timeout.
	const sandbox = await Sandbox.create(process.env.TEMPLATE || 'minimal', {
		timeoutMs: 600_000,
		requestTimeoutMs: createTimeoutMs,
		metadata: { suite: 'hostvm-e2e' },
	});
	assert.match(sandbox.sandboxId, /^i[a-z0-9]{20}$/);
	step('create', started, { sandboxId: sandbox.sandboxId });

	started = Date.now();
	const result = await sandbox.commands.run('echo hello-from-warren; uname -m', { requestTimeoutMs: 60_000 });
	assert.equal(result.exitCode, 0);
	assert.match(result.stdout, /^hello-from-warren\n/);
	step('commands.run', started, { stdout: result.stdout });

	started = Date.now();
	const text = `written by the e2b SDK into ${sandbox.sandboxId}\n`;
	await sandbox.files.write('/tmp/hostvm-e2e.txt', text, { requestTimeoutMs: 60_000 });
	const back = await sandbox.files.read('/tmp/hostvm-e2e.txt', { requestTimeoutMs: 60_000 });
	assert.equal(back, text);
	step('files.write+read', started);

	started = Date.now();
	await sandbox.kill({ requestTimeoutMs: 120_000 });
	assert.equal(await sandbox.isRunning().catch(() => false), false);
	step('kill', started);
})().catch((err) => {
	console.error('sdk_vm: FAILED', err);
	process.exit(1);
});
