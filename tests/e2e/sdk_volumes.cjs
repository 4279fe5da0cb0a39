// The npm e2b SDK against warren-api, jail runtime: Volume.create / list /
// getInfo / destroy and volumeMounts in Sandbox.create (docs/volumes.md).
// A volume written by one sandbox is read by the next; a second sandbox
// mounting it while the first runs gets a 409; destroying it while mounted
// is refused; an unknown volume in volumeMounts is a 400 naming it; the
// team's volume count quota (WARREN_VOLUME_QUOTA_COUNT=2 here) is a 403.
// Commands go straight to the sandbox's agent (its slot address, from
// PostgreSQL). Prints one line per step.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Sandbox, Volume, VolumeNotFoundError } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

function psql(sql) {
	return execFileSync('psql', [process.env.WARREN_PG_URL, '-tAc', sql]).toString().trim();
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

async function rejectsWith(promise, status, text) {
	await assert.rejects(promise, (err) => {
		assert.ok(err.message.startsWith(`${status}:`), `status ${status}: ${err.message}`);
		assert.ok(err.message.includes(text), `"${text}" in: ${err.message}`);
		return true;
	});
}

async function main() {
	const volume = await Volume.create('data');
	assert.match(volume.volumeId, /^vol_[a-z0-9]{20}$/);
	assert.equal(volume.name, 'data');
	assert.deepEqual((await Volume.list()).map((v) => v.name), ['data']);
	assert.equal((await Volume.getInfo(volume.volumeId)).name, 'data');
	await rejectsWith(Volume.create('data'), 409, "volume 'data' already exists");
	console.log('Volume.create/list/getInfo ok:', volume.volumeId);

	// the first sandbox writes (as the default user) into the volume
	const first = await Sandbox.create('minimal', { timeoutMs: 120_000, volumeMounts: { '/data': volume } });
	let agent = direct(first.sandboxId, first);
	await agent.commands.run('echo persisted > /data/hello.txt && mkdir -p /data/dir && id -u > /data/dir/uid');
	await agent.files.write('/data/dir/sdk.txt', 'written by files.write');
	const listed = (await agent.files.list('/data')).map((e) => e.name).sort();
	assert.deepEqual(listed, ['dir', 'hello.txt']);
	console.log('sandbox', first.sandboxId, 'wrote /data/hello.txt');

	// one writer at a time: a second mount and a destroy are refused
	await rejectsWith(Sandbox.create('minimal', { volumeMounts: { '/mnt': 'data' } }), 409, 'in use by sandbox');
	await rejectsWith(Volume.destroy(volume.volumeId), 409, 'is mounted by sandbox');
	console.log('second mount -> 409, destroy while mounted -> 409');

	// unknown volume, bad path
	await rejectsWith(Sandbox.create('minimal', { volumeMounts: { '/x': 'nope' } }), 400, "volume 'nope' not found");
	await rejectsWith(Sandbox.create('minimal', { volumeMounts: { 'relative': 'data' } }), 400, 'volume mount path');
	console.log('unknown volume -> 400, relative path -> 400');

	// the next sandbox (the first killed) reads what the first wrote
	await first.kill();
	const second = await Sandbox.create('minimal', { timeoutMs: 120_000, volumeMounts: { '/mnt/v': 'data' } });
	agent = direct(second.sandboxId, second);
	assert.equal((await agent.commands.run('cat /mnt/v/hello.txt')).stdout, 'persisted\n');
	assert.equal(await agent.files.read('/mnt/v/dir/sdk.txt'), 'written by files.write');
	const uid = (await agent.commands.run('cat /mnt/v/dir/uid')).stdout.trim();
	assert.equal((await agent.commands.run('stat -c %u /mnt/v/hello.txt')).stdout.trim(), uid,
		'the file keeps its owner across sandboxes');
	console.log('sandbox', second.sandboxId, 'read it back at /mnt/v (owner uid', uid + ')');

	// the count quota: 2 volumes
	await Volume.create('second');
	await rejectsWith(Volume.create('third'), 403, 'volume quota exceeded');
	console.log('third volume -> 403 quota');

	// a sandbox that ends by its timeout releases the volume too
	await second.setTimeout(1_000);
	const deadline = Date.now() + 30_000;
	for (;;) {
		try {
			assert.equal(await Volume.destroy(volume.volumeId), true);
			break;
		} catch (err) {
			if (Date.now() > deadline)
				throw err;
			await new Promise((resolve) => setTimeout(resolve, 200));
		}
	}
	await assert.rejects(Volume.getInfo(volume.volumeId), VolumeNotFoundError);
	assert.equal(await Volume.destroy(volume.volumeId), false);
	console.log('after the timeout: destroy true, then getInfo -> VolumeNotFoundError');
}

main().then(() => console.log('sdk volumes: ok'), (err) => {
	console.error(err);
	process.exit(1);
});
