// The npm e2b SDK against warren-api, jail runtime: pause() / Sandbox.connect
// (resume) / onTimeout 'pause' / kill of a paused sandbox / a pause racing a
// kill. Commands go straight to the sandbox's agent (its slot address, from
// PostgreSQL); the counter is read from the host through /proc/<pid>/root,
// which works while the sandbox is frozen. Prints one line per step and
// `figure:` lines (pause and resume latency as the SDK sees them).
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Sandbox, SandboxNotFoundError } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function psql(sql) {
	return execFileSync('psql', [process.env.WARREN_PG_URL, '-tAc', sql]).toString().trim();
}

function rowState(sandboxId) {
	return psql(`SELECT state FROM sandboxes WHERE id = '${sandboxId}'`);
}

// The agent of the sandbox, addressed directly (no proxy in this stack).
function direct(sandboxId, info) {
	return new Sandbox({
		sandboxId,
		envdAccessToken: info.envdAccessToken ?? info.connectionConfig?.accessToken,
		envdVersion: info.envdApi?.version ?? '0.1.0',
		sandboxUrl: `http://${psql(`SELECT host(slot_address) FROM sandboxes WHERE id = '${sandboxId}'`)}:49983`,
		requestTimeoutMs: 20000,
	});
}

// The sandbox's cgroup directory (v2: cgroup.freeze lives there).
function cgroupDir(sandboxId) {
	for (const root of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
		const dir = path.join(root, process.env.CGROUP_PARENT, sandboxId);
		if (fs.existsSync(path.join(dir, 'cgroup.freeze')))
			return dir;
	}
	return null;
}

// The counter file /tmp/count of the sandbox, read from the host through
// the root of any of its processes.
function readCounter(sandboxId) {
	const dir = cgroupDir(sandboxId);
	assert.ok(dir, `no cgroup for ${sandboxId}`);
	const pids = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
	for (const pid of pids) {
		try {
			return Number(fs.readFileSync(`/proc/${pid}/root/tmp/count`, 'utf8').trim());
		} catch (_) { /* a process in another mount namespace, or gone */ }
	}
	throw new Error(`counter of ${sandboxId} not readable`);
}

async function waitFor(what, predicate, timeoutMs) {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const value = await predicate();
		if (value)
			return value;
		if (Date.now() > deadline)
			throw new Error(`timed out waiting for ${what}`);
		await sleep(100);
	}
}

const COUNTER = 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done';

async function pauseResume() {
	const sbx = await Sandbox.create('minimal', { timeoutMs: 120_000 });
	const id = sbx.sandboxId;
	let agent = direct(id, sbx);
	await agent.commands.run('echo kept > /keep.txt', { user: 'root' });
	await agent.commands.run(`sh -c '${COUNTER}'`, { background: true });
	await waitFor('the counter', () => {
		try {
			return readCounter(id) > 2;
		} catch (_) {
			return false; // not written yet
		}
	}, 20_000);
	console.log('created, file written, counter running:', id);

	let t0 = Date.now();
	assert.equal(await sbx.pause(), true);
	console.log(`figure: sdk pause() ${Date.now() - t0} ms`);
	assert.equal(rowState(id), 'paused');
	assert.equal(await sbx.pause(), false, 'a second pause() is false (409)');
	const info = await Sandbox.getInfo(id);
	assert.equal(info.state, 'paused');
	const paused = await Sandbox.list({ query: { state: ['paused'] } }).nextItems();
	assert.ok(paused.some((s) => s.sandboxId === id), 'listed with state=paused');
	const running = await Sandbox.list({ query: { state: ['running'] } }).nextItems();
	assert.ok(!running.some((s) => s.sandboxId === id), 'not listed with state=running');
	console.log('pause() true, again false, getInfo/list say paused');

	const frozenAt = readCounter(id);
	await sleep(1500); // 15 increments if it were running
	assert.equal(readCounter(id), frozenAt, 'no progress while paused');
	console.log(`counter stayed at ${frozenAt} for 1.5 s while paused`);

	t0 = Date.now();
	const resumed = await Sandbox.connect(id, { timeoutMs: 90_000 });
	console.log(`figure: sdk Sandbox.connect() of a paused sandbox ${Date.now() - t0} ms`);
	assert.equal(resumed.sandboxId, id);
	assert.equal((await Sandbox.getInfo(id)).state, 'running');
	const after = await waitFor('the counter to move', () => {
		const v = readCounter(id);
		return v > frozenAt ? v : 0;
	}, 10_000);
	assert.ok(after < frozenAt + 50, `continued from ${frozenAt}, not restarted: ${after}`);
	agent = direct(id, sbx);
	assert.equal((await agent.commands.run('cat /keep.txt')).stdout, 'kept\n');
	console.log(`connect resumed it: file kept, counter ${frozenAt} -> ${after}`);
	// end_at was reset from the connect's timeout
	const endAt = (await Sandbox.getInfo(id)).endAt.getTime();
	assert.ok(endAt > Date.now() + 60_000, `end_at reset: ${new Date(endAt).toISOString()}`);

	// connect of a running sandbox: no resume, same sandbox
	assert.equal((await Sandbox.connect(id)).sandboxId, id);

	// kill of a paused sandbox
	assert.equal(await sbx.pause(), true);
	await sbx.kill();
	assert.equal(rowState(id), 'killed');
	await assert.rejects(Sandbox.getInfo(id), SandboxNotFoundError);
	assert.equal(cgroupDir(id), null, 'its cgroup is gone');
	console.log('kill of a paused sandbox ok');
}

async function onTimeoutPause() {
	const sbx = await Sandbox.create('minimal', { timeoutMs: 3_000, lifecycle: { onTimeout: 'pause' } });
	const id = sbx.sandboxId;
	const info = await Sandbox.getInfo(id);
	assert.deepEqual(info.lifecycle, { onTimeout: 'pause', autoResume: false });
	await direct(id, sbx).commands.run('echo survived > /timeout.txt', { user: 'root' });
	await waitFor('the timeout to pause it', async () => (await Sandbox.getInfo(id)).state === 'paused', 20_000);
	assert.equal(rowState(id), 'paused');
	console.log('onTimeout pause: paused at its timeout, not killed');
	await Sandbox.connect(id, { timeoutMs: 60_000 });
	assert.equal(rowState(id), 'running');
	assert.equal((await direct(id, sbx).commands.run('cat /timeout.txt')).stdout, 'survived\n');
	console.log('connect resumed it, file kept');
	await sbx.kill();
}

// A pause and a kill at the same time end in one terminal state: killed,
// whichever is sent first (and both at once).
async function pauseKillRace(order) {
	const sbx = await Sandbox.create('minimal', { timeoutMs: 60_000 });
	const id = sbx.sandboxId;
	let pause, kill;
	if (order === 'kill first') {
		const k = Sandbox.kill(id);
		await sleep(5);
		[kill, pause] = await Promise.allSettled([k, sbx.pause()]);
	} else if (order === 'pause first') {
		const p = sbx.pause();
		await sleep(5);
		[pause, kill] = await Promise.allSettled([p, Sandbox.kill(id)]);
	} else {
		[pause, kill] = await Promise.allSettled([sbx.pause(), Sandbox.kill(id)]);
	}
	assert.equal(kill.status, 'fulfilled', `kill: ${kill.reason}`);
	if (pause.status === 'rejected')
		assert.ok(pause.reason instanceof SandboxNotFoundError, `pause: ${pause.reason}`);
	await waitFor('one terminal state', () => rowState(id) === 'killed', 10_000);
	assert.equal(cgroupDir(id), null, 'its cgroup is gone');
	assert.equal(await Sandbox.connect(id).then(() => 'connected', (e) => e.constructor.name),
		     'SandboxNotFoundError');
	console.log(`pause racing kill (${order}): pause ${pause.status === 'fulfilled' ? pause.value : 'not found'}, ended killed`);
}

(async () => {
	await pauseResume();
	await onTimeoutPause();
	for (const order of ['together', 'kill first', 'pause first'])
		await pauseKillRace(order);
})().catch((err) => {
	console.error('sdk_pause: FAILED', err);
	process.exit(1);
});
