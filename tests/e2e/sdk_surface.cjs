// The npm e2b SDK against warren-api, beyond create/kill: getMetrics of a
// sandbox running a CPU loop, list filters, a clear error for a call
// warren does not implement (501), and updateNetwork({allowInternetAccess})
// cutting egress to a test server (EGRESS_TARGET, a documentation address
// inside the test's own namespace).
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Sandbox, Secret } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function slotAddress(sandboxId) {
	return execFileSync('psql', [process.env.WARREN_PG_URL, '-tAc',
		`SELECT host(slot_address) FROM sandboxes WHERE id = '${sandboxId}'`]).toString().trim();
}

function agentOf(created) {
	return new Sandbox({
		sandboxId: created.sandboxId,
		envdAccessToken: created.envdAccessToken ?? created.connectionConfig?.accessToken,
		envdVersion: created.envdApi?.version ?? '0.1.0',
		sandboxUrl: `http://${slotAddress(created.sandboxId)}:49983`,
		requestTimeoutMs: 20000,
	});
}

async function canConnect(direct) {
	const [host, port] = process.env.EGRESS_TARGET.split(':');
	const probe = `python3 -c "import socket; socket.create_connection(('${host}', ${port}), 3); print('OPEN')"`;
	try {
		const result = await direct.commands.run(probe, { timeoutMs: 15000 });
		return result.stdout.includes('OPEN');
	} catch (err) {
		return false; /* a non-zero exit: the connection failed */
	}
}

async function metrics(sbx, direct) {
	const loop = await direct.commands.run("timeout 8 sh -c 'while :; do :; done'", { background: true });
	await sleep(6000);
	const samples = await sbx.getMetrics();
	console.log(`getMetrics: ${samples.length} samples, cpuUsedPct ${samples.map((s) => s.cpuUsedPct).join(' ')}`);
	assert.ok(samples.length >= 2, `at least two samples: ${JSON.stringify(samples)}`);
	assert.ok(samples.some((s) => s.cpuUsedPct > 5), 'the CPU loop shows (> 5 % even on a loaded host)');
	for (const s of samples) {
		assert.ok(s.timestamp instanceof Date && !isNaN(s.timestamp), 'timestamp is a date');
		assert.equal(s.cpuCount, 2); // sandbox_cpu_count, what the API reports too
		assert.ok(s.cpuUsedPct >= 0 && s.cpuUsedPct <= 100 * s.cpuCount, `cpuUsedPct ${s.cpuUsedPct}`);
		assert.ok(s.memUsed > 0 && s.memUsed <= s.memTotal, `memUsed ${s.memUsed} of ${s.memTotal}`);
		assert.equal(s.memTotal, 512 * 1024 * 1024);
		assert.ok(s.diskTotal > 0 && s.diskUsed > 0 && s.diskUsed < s.diskTotal, `disk ${s.diskUsed}/${s.diskTotal}`);
	}
	const last = samples[samples.length - 1].timestamp;
	const recent = await sbx.getMetrics({ start: new Date(last.getTime() - 1000), end: last });
	assert.ok(recent.length >= 1 && recent.length < samples.length, `a window: ${recent.length}`);
	await loop.kill().catch(() => {});
	console.log('getMetrics ok: memUsed', samples[0].memUsed, 'diskUsed', samples[0].diskUsed);
}

async function listFilters(sbx) {
	const tag = { suite: 'surface' };
	const all = await Sandbox.list({ query: { metadata: tag, state: ['running'] } }).nextItems();
	assert.ok(all.some((s) => s.sandboxId === sbx.sandboxId), 'listed by metadata + state');
	const base = await Sandbox.list({ query: { metadata: tag, template: 'base' } }).nextItems();
	assert.equal(base.length, 1);
	const minimal = await Sandbox.list({ query: { metadata: tag, template: 'minimal' } }).nextItems();
	assert.equal(minimal.length, 1);
	assert.notEqual(minimal[0].sandboxId, base[0].sandboxId);
	const later = await Sandbox.list({ query: { metadata: tag, startedAfter: new Date(Date.now() + 3600e3) } }).nextItems();
	assert.equal(later.length, 0);
	const asc = await Sandbox.list({ query: { metadata: tag }, order: 'asc' }).nextItems();
	const desc = await Sandbox.list({ query: { metadata: tag }, order: 'desc' }).nextItems();
	assert.equal(asc.length, 2);
	assert.deepEqual(asc.map((s) => s.sandboxId), desc.map((s) => s.sandboxId).reverse());
	const pager = Sandbox.list({ query: { metadata: tag }, limit: 1 });
	const first = await pager.nextItems();
	assert.equal(first.length, 1);
	assert.ok(pager.hasNext, 'a next page');
	const second = await pager.nextItems();
	assert.equal(second.length, 1);
	assert.notEqual(first[0].sandboxId, second[0].sandboxId);
	await assert.rejects(Sandbox.list({ query: { state: ['sleeping'] } }).nextItems(), /400/);
	console.log('list filters ok');
}

async function unimplemented(sbx) {
	await assert.rejects(Secret.list().nextItems(), (err) => {
		console.log('Secret.list ->', err.name, err.message);
		return /501/.test(err.message) && /not implemented by warren/.test(err.message) &&
			!/NotFound/.test(err.name);
	});
	await assert.rejects(Sandbox.create('base', { volumeMounts: { '/data': 'my-volume' } }), (err) => {
		console.log('create with volumeMounts of an unknown volume ->', err.message);
		return /^400: volume 'my-volume' not found$/.test(err.message);
	});
	console.log('unimplemented call ok');
}

/* A connection that should work gets three tries (a loaded machine). */
async function connects(direct) {
	for (let i = 0; i < 3; i++)
		if (await canConnect(direct))
			return true;
	return false;
}

async function network(sbx, direct) {
	assert.equal(await connects(direct), true, 'egress to the test server before the update');
	await Sandbox.updateNetwork(sbx.sandboxId, { allowInternetAccess: false });
	assert.equal(await canConnect(direct), false, 'egress blocked after allowInternetAccess=false');
	await Sandbox.updateNetwork(sbx.sandboxId, { allowInternetAccess: true });
	assert.equal(await connects(direct), true, 'egress again after allowInternetAccess=true');
	console.log('updateNetwork allowInternetAccess ok');
}

(async () => {
	const sbx = await Sandbox.create('base', { timeoutMs: 120_000, metadata: { suite: 'surface' } });
	const other = await Sandbox.create('minimal', { timeoutMs: 120_000, metadata: { suite: 'surface' } });
	const direct = agentOf(sbx);
	try {
		await metrics(sbx, direct);
		await listFilters(sbx);
		await unimplemented(sbx);
		await network(sbx, direct);
	} finally {
		await sbx.kill().catch(() => {});
		await other.kill().catch(() => {});
	}
})().catch((err) => {
	console.error('sdk_surface: FAILED', err);
	process.exit(1);
});
