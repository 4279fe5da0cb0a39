// The npm e2b SDK against warren-api, jail runtime: createSnapshot() of a
// running sandbox, kill it, Sandbox.create(<snapshotId>) has its file;
// listSnapshots() shows it (all, and by sandbox); a snapshot over the
// team's snapshot_quota_mb is refused with a 4xx; deleteSnapshot removes
// it from the list. Commands go straight to the sandbox's agent (its slot
// address, from PostgreSQL). Prints one line per step and `figure:` lines.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Sandbox } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

function psql(sql) {
	return execFileSync('psql', [process.env.WARREN_PG_URL, '-tAc', sql]).toString().trim();
}

function direct(sandboxId, info) {
	return new Sandbox({
		sandboxId,
		envdAccessToken: info.envdAccessToken ?? info.connectionConfig?.accessToken,
		envdVersion: info.envdApi?.version ?? '0.1.0',
		sandboxUrl: `http://${psql(`SELECT host(slot_address) FROM sandboxes WHERE id = '${sandboxId}'`)}:49983`,
		requestTimeoutMs: 20000,
	});
}

async function listAll(opts) {
	return await Sandbox.listSnapshots(opts).nextItems();
}

async function main() {
	const sbx = await Sandbox.create('minimal', { timeoutMs: 120_000 });
	const id = sbx.sandboxId;
	let agent = direct(id, sbx);
	await agent.commands.run('mkdir -p /data && echo snapshotted > /data/note.txt && rm -f /etc/hostname.old', { user: 'root' });
	console.log('created, file written:', id);

	let t0 = Date.now();
	const snap = await sbx.createSnapshot({ name: 'e2e-note' });
	console.log(`figure: sdk createSnapshot() ${Date.now() - t0} ms`);
	assert.match(snap.snapshotId, /^snap-/);
	assert.ok(snap.names.includes('e2e-note'), `names: ${snap.names}`);
	console.log('createSnapshot:', snap.snapshotId);
	// the source keeps running (thawed after the copy)
	assert.equal((await agent.commands.run('cat /data/note.txt')).stdout, 'snapshotted\n');
	assert.equal(psql(`SELECT state FROM sandboxes WHERE id = '${id}'`), 'running');

	const all = await listAll();
	assert.ok(all.some((s) => s.snapshotId === snap.snapshotId), 'listSnapshots() shows it');
	const mine = await sbx.listSnapshots().nextItems();
	assert.deepEqual(mine.map((s) => s.snapshotId), [snap.snapshotId], 'listed by sandbox');
	console.log('listSnapshots shows it');

	await sbx.kill();
	t0 = Date.now();
	const copy = await Sandbox.create(snap.snapshotId, { timeoutMs: 60_000 });
	console.log(`figure: sdk Sandbox.create(snapshot) ${Date.now() - t0} ms`);
	agent = direct(copy.sandboxId, copy);
	assert.equal((await agent.commands.run('cat /data/note.txt')).stdout, 'snapshotted\n');
	console.log('kill, create from the snapshot: the file is there');

	// over the quota (snapshot_quota_mb in this stack: 2): a 4xx naming it
	await agent.commands.run('head -c 3000000 /dev/zero > /data/big', { user: 'root' });
	await assert.rejects(copy.createSnapshot(), (err) => {
		assert.match(String(err.message), /quota/);
		return true;
	});
	assert.equal(psql(`SELECT count(*) FROM snapshots`), '1', 'no row for the refused one');
	console.log('over the quota: refused');
	await copy.kill();

	assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), true);
	assert.ok(!(await listAll()).some((s) => s.snapshotId === snap.snapshotId), 'deleted');
	console.log('deleteSnapshot: gone from the list');
}

main().then(() => console.log('sdk snapshot: ok'), (err) => {
	console.error(err);
	process.exit(1);
});
