// The unchanged npm e2b SDK, configured only by E2B_* variables (E2B_API_URL,
// E2B_API_KEY, E2B_DOMAIN, E2B_SANDBOX_URL = warren-proxy, which routes by the
// SDK's E2b-Sandbox-Id / E2b-Sandbox-Port headers, and by Host for public
// URLs): create a sandbox, run commands, write and read a file, reach a
// server in the sandbox through its public URL, check the egress policy,
// then let it time out (or kill it). Prints one JSON line per step with its
// duration; exits non-zero on the first failure.
// Env: E2B_SDK_DIR; TEMPLATE (default minimal); RUNTIME (metadata
// warren.runtime, placement); CREATE_TIMEOUT_MS; PYTHON=1 (the template has
// python3: print(6*7) and the public URL server); EGRESS_ALLOW /
// EGRESS_DENY (addresses serving "target <address>" on port 8000: the
// sandbox is created with allowOut [allow], denyOut [0.0.0.0/0]); END=timeout
// (setTimeout(3 s), then wait until it is gone) or kill (default); PAUSE=1:
// a counting background process, pause() -> true (again: false), getInfo
// paused, Sandbox.connect -> the file is there and the counter goes on;
// SNAPSHOT=1 (after PAUSE=1): createSnapshot() of the running sandbox,
// Sandbox.create(snapshotId) and Sandbox.fork(id) restore its guest: the
// file is there, the counter goes on from the snapshot, each has its own
// token, host name and clock; the source goes on too.
'use strict';
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const { Sandbox } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

function step(name, started, extra) {
	console.log(JSON.stringify(Object.assign({ step: name, ms: Date.now() - started }, extra || {})));
}

// GET / of a public URL host through warren-proxy: {status, body}.
function getThroughProxy(host) {
	const proxy = new URL(process.env.E2B_SANDBOX_URL);
	return new Promise((resolve, reject) => {
		const request = http.get({ host: proxy.hostname, port: proxy.port, path: '/', headers: { Host: host },
			timeout: 10_000 }, (response) => {
			let body = '';
			response.setEncoding('utf8');
			response.on('data', (chunk) => { body += chunk; });
			response.on('end', () => resolve({ status: response.statusCode, body }));
		});
		request.on('timeout', () => request.destroy(new Error('timed out')));
		request.on('error', reject);
	});
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// The counter a PAUSE run starts in the sandbox (0 when unreadable).
const count = async (sbx) => Number((await sbx.commands.run('cat /tmp/count',
	{ requestTimeoutMs: 60_000 })).stdout.trim());

// A sandbox restored from source's snapshot: the source's file, the counter
// going on from where the snapshot caught it, its own name, clock and
// token (the source's token does not open it).
async function checkRestored(copy, source, text, counted) {
	assert.notEqual(copy.sandboxId, source.sandboxId);
	assert.equal(await copy.files.read('/tmp/hostvm-e2e.txt', { requestTimeoutMs: 60_000 }), text);
	const first = await count(copy);
	assert.ok(first >= counted && first < counted + 600, `counter ${counted} -> ${first}: not from the snapshot`);
	await sleep(2000);
	const later = await count(copy);
	assert.ok(later > first, `the restored counter does not go on: ${first} -> ${later}`);
	// The copy's clock against the source's, read just before and just after
	// it: both guests run on one host (whose own clock drifts from this
	// machine's under TCG, so Date.now() is no ruler), and one command takes
	// seconds under TCG, so a single later read of the source would count
	// that latency as skew. A clock left at the snapshot's moment falls
	// behind by the whole restore (tens of seconds) and fails the bracket.
	const sourceDate = async () => Number((await source.commands.run('date +%s',
		{ requestTimeoutMs: 60_000 })).stdout);
	const before = await sourceDate();
	const facts = (await copy.commands.run('hostname; date +%s', { requestTimeoutMs: 60_000 })).stdout.split('\n');
	const after = await sourceDate();
	assert.equal(facts[0], copy.sandboxId, 'the restored guest is named after its sandbox');
	const copyNow = Number(facts[1]);
	// date +%s truncates to whole seconds: a second of slack on each side,
	// and one more for the agent's own 1 s threshold before it sets the clock
	const skew = copyNow < before ? copyNow - before : copyNow > after ? copyNow - after : 0;
	assert.ok(Math.abs(skew) <= 2, `the restored guest's clock (${copyNow}) is ${skew} s outside the source's [${before}, ${after}]`);
	const stolen = await fetch(`${process.env.E2B_SANDBOX_URL}/envs`, {
		headers: { 'E2b-Sandbox-Id': copy.sandboxId, 'E2b-Sandbox-Port': '49983',
			'X-Access-Token': source.envdAccessToken || 'none' } });
	assert.equal(stolen.status, 401, 'the source\'s token opens the restored sandbox');
	return { id: copy.sandboxId, first, later, skew };
}

(async () => {
	const createTimeoutMs = Number(process.env.CREATE_TIMEOUT_MS || 300000);
	const python = process.env.PYTHON === '1';
	const allow = process.env.EGRESS_ALLOW, deny = process.env.EGRESS_DENY;
	const metadata = { suite: 'hostvm-e2e' };
	if (process.env.RUNTIME)
		metadata['warren.runtime'] = process.env.RUNTIME;
	const options = { timeoutMs: 600_000, requestTimeoutMs: createTimeoutMs, metadata };
	if (allow)
		options.network = { allowOut: [allow], denyOut: ['0.0.0.0/0'] };

	let started = Date.now();
	// Guest boot under TCG takes tens of seconds: a long request timeout.
	const sandbox = await Sandbox.create(process.env.TEMPLATE || 'minimal', options);
	assert.match(sandbox.sandboxId, /^i[a-z0-9]{20}$/);
	step('create', started, { sandboxId: sandbox.sandboxId });

	started = Date.now();
	const result = await sandbox.commands.run('echo hello-from-warren; uname -m', { requestTimeoutMs: 60_000 });
	assert.equal(result.exitCode, 0);
	assert.match(result.stdout, /^hello-from-warren\n/);
	step('commands.run', started, { stdout: result.stdout });

	if (python) {
		started = Date.now();
		const answer = await sandbox.commands.run("python3 -c 'print(6*7)'", { requestTimeoutMs: 60_000 });
		assert.equal(answer.stdout, '42\n');
		step('python3', started);
	}

	started = Date.now();
	const text = `written by the e2b SDK into ${sandbox.sandboxId}\n`;
	await sandbox.files.write('/tmp/hostvm-e2e.txt', text, { requestTimeoutMs: 60_000 });
	const back = await sandbox.files.read('/tmp/hostvm-e2e.txt', { requestTimeoutMs: 60_000 });
	assert.equal(back, text);
	step('files.write+read', started);

	if (python) {
		started = Date.now();
		await sandbox.files.write('/tmp/www/index.html', `public ${sandbox.sandboxId}\n`);
		await sandbox.commands.run('python3 -m http.server 8080 --directory /tmp/www', { background: true });
		const host = sandbox.getHost(8080);
		assert.equal(host, `8080-${sandbox.sandboxId}.${process.env.E2B_DOMAIN}`);
		let answer = null;
		for (let i = 0; i < 120 && !(answer && answer.status === 200); i++) {
			if (i)
				await sleep(500);
			answer = await getThroughProxy(host).catch((err) => ({ status: 0, body: String(err) }));
		}
		assert.equal(answer.status, 200, `public URL ${host}: ${answer.status} ${answer.body.slice(0, 200)}`);
		assert.equal(answer.body, `public ${sandbox.sandboxId}\n`);
		step('public-url', started, { host });
	}

	if (allow) {
		started = Date.now();
		const fetch = (address) => `python3 -c "import urllib.request as u; ` +
			`print(u.urlopen('http://${address}:8000/', timeout=10).read().decode().strip())"`;
		const allowed = await sandbox.commands.run(fetch(allow), { requestTimeoutMs: 60_000 });
		assert.equal(allowed.stdout, `target ${allow}\n`);
		let denied = null;
		try {
			denied = await sandbox.commands.run(fetch(deny), { requestTimeoutMs: 60_000 });
		} catch (err) {
			denied = err; // CommandExitError: the connection was refused
		}
		assert.notEqual(denied.exitCode, 0, `denied address answered: ${denied.stdout}`);
		assert.doesNotMatch(denied.stdout || '', /target/);
		step('egress', started, { allowed: allow, denied: deny, deniedStderr: (denied.stderr || '').split('\n').slice(-2)[0] });
	}

	if (process.env.PAUSE === '1') {
		// pause() saves the guest (warren-vmm snapshot) and stops its VMM;
		// connect() restores it: the file is there, the counter goes on.
		started = Date.now();
		const id = sandbox.sandboxId;
		await sandbox.commands.run("sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done'",
			{ background: true, requestTimeoutMs: 60_000 });
		let before = 0;
		for (let i = 0; i < 60 && before < 3; i++) {
			await sleep(500);
			before = await count(sandbox).catch(() => 0);
		}
		assert.ok(before >= 3, `the counter did not start: ${before}`);
		let t0 = Date.now();
		assert.equal(await sandbox.pause({ requestTimeoutMs: 300_000 }), true);
		const pauseMs = Date.now() - t0;
		assert.equal((await Sandbox.getInfo(id)).state, 'paused');
		assert.equal(await sandbox.pause({ requestTimeoutMs: 300_000 }), false, 'a second pause() is false');
		t0 = Date.now();
		const resumed = await Sandbox.connect(id, { timeoutMs: 600_000, requestTimeoutMs: 300_000 });
		const connectMs = Date.now() - t0;
		assert.equal((await Sandbox.getInfo(id)).state, 'running');
		assert.equal(await resumed.files.read('/tmp/hostvm-e2e.txt', { requestTimeoutMs: 60_000 }), text);
		const after = await count(resumed);
		assert.ok(after >= before && after < before + 600, `counter ${before} -> ${after}: not continued`);
		await sleep(2000);
		const later = await count(resumed);
		assert.ok(later > after, `the counter stopped after the resume: ${after} -> ${later}`);
		step('pause-resume', started, { pauseMs, connectMs, before, after, later });
	}

	if (process.env.SNAPSHOT === '1') {
		started = Date.now();
		let t0 = Date.now();
		const counted = await count(sandbox);
		const snapshot = await sandbox.createSnapshot({ requestTimeoutMs: 300_000 });
		const snapshotMs = Date.now() - t0;
		assert.match(snapshot.snapshotId, /^snap-/);
		const sourceAfter = await count(sandbox);
		await sleep(1000);
		assert.ok(await count(sandbox) > sourceAfter, 'the source does not go on after its snapshot');
		t0 = Date.now();
		const copy = await Sandbox.create(snapshot.snapshotId, { timeoutMs: 600_000,
			requestTimeoutMs: createTimeoutMs, metadata });
		const createMs = Date.now() - t0;
		const restored = await checkRestored(copy, sandbox, text, counted);
		await copy.kill({ requestTimeoutMs: 120_000 });
		t0 = Date.now();
		const forks = await Sandbox.fork(sandbox.sandboxId, { count: 1, timeoutMs: 600_000,
			requestTimeoutMs: 600_000 });
		const forkMs = Date.now() - t0;
		assert.equal(forks.length, 1);
		assert.ok(forks[0] instanceof Sandbox, `the fork failed: ${forks[0]}`);
		const forked = await checkRestored(forks[0], sandbox, text, sourceAfter);
		await forks[0].kill({ requestTimeoutMs: 120_000 });
		step('snapshot', started, { snapshotMs, createMs, forkMs, counted, restored, forked });
	}

	started = Date.now();
	if (process.env.END === 'timeout') {
		await sandbox.setTimeout(3_000);
		let running = true;
		for (let i = 0; i < 120 && running; i++) {
			await sleep(500);
			running = await sandbox.isRunning({ requestTimeoutMs: 10_000 }).catch(() => true);
		}
		assert.equal(running, false, 'the sandbox still runs after its timeout');
		step('timeout', started);
	} else {
		await sandbox.kill({ requestTimeoutMs: 120_000 });
		assert.equal(await sandbox.isRunning().catch(() => false), false);
		step('kill', started);
	}
})().catch((err) => {
	console.error('sdk_vm: FAILED', err);
	process.exit(1);
});
