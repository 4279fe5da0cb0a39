// The npm e2b SDK against warren-api, jail runtime: Sandbox.fork(id,
// {count: 2}) of a sandbox with a file written; both forks see the file,
// a write in one fork is seen neither in the other nor in the source, the
// source keeps running; the fork's snapshot is not left in
// listSnapshots(); a fork of an unknown id is a SandboxNotFoundError and
// a count over the bound a 400. Commands go straight to each sandbox's
// agent (its slot address, from PostgreSQL). Prints one line per step and
// `figure:` lines.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const e2b = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));
const { Sandbox, SandboxNotFoundError } = e2b;

function psql(sql) {
	return execFileSync('psql', [process.env.WARREN_PG_URL, '-tAc', sql]).toString().trim();
}

function direct(sandbox) {
	const id = sandbox.sandboxId;
	return new Sandbox({
		sandboxId: id,
		envdAccessToken: sandbox.envdAccessToken ?? sandbox.connectionConfig?.accessToken,
		envdVersion: sandbox.envdApi?.version ?? '0.1.0',
		sandboxUrl: `http://${psql(`SELECT host(slot_address) FROM sandboxes WHERE id = '${id}'`)}:49983`,
		requestTimeoutMs: 20000,
	});
}

async function cat(agent, file) {
	const out = await agent.commands.run(`cat ${file} 2>/dev/null || echo missing`);
	return out.stdout.trim();
}

async function main() {
	const source = await Sandbox.create('minimal', { timeoutMs: 120_000 });
	const sourceAgent = direct(source);
	await sourceAgent.commands.run('mkdir -p /data && echo from-source > /data/note.txt', { user: 'root' });
	console.log('source created, file written:', source.sandboxId);

	const t0 = Date.now();
	const forks = await Sandbox.fork(source.sandboxId, { count: 2, timeoutMs: 60_000 });
	console.log(`figure: sdk Sandbox.fork(count 2) ${Date.now() - t0} ms`);
	assert.equal(forks.length, 2, 'one entry per fork');
	for (const fork of forks) {
		assert.ok(fork instanceof Sandbox, `a fork failed: ${fork}`);
		assert.notEqual(fork.sandboxId, source.sandboxId);
	}
	assert.notEqual(forks[0].sandboxId, forks[1].sandboxId);
	const [a, b] = forks.map(direct);
	assert.equal(await cat(a, '/data/note.txt'), 'from-source');
	assert.equal(await cat(b, '/data/note.txt'), 'from-source');
	console.log('fork count 2: both forks see the source file');

	await a.commands.run('echo from-fork-a > /data/own.txt && echo changed > /data/note.txt', { user: 'root' });
	assert.equal(await cat(a, '/data/own.txt'), 'from-fork-a');
	assert.equal(await cat(b, '/data/own.txt'), 'missing', 'fork b sees fork a\'s file');
	assert.equal(await cat(b, '/data/note.txt'), 'from-source');
	assert.equal(await cat(sourceAgent, '/data/own.txt'), 'missing', 'the source sees a fork\'s file');
	assert.equal(await cat(sourceAgent, '/data/note.txt'), 'from-source');
	console.log('a write in one fork: not in the other fork, not in the source');

	assert.equal(psql(`SELECT state FROM sandboxes WHERE id = '${source.sandboxId}'`), 'running');
	await sourceAgent.commands.run('echo still > /data/later.txt', { user: 'root' });
	assert.equal(await cat(b, '/data/later.txt'), 'missing');
	const info = await forks[0].getInfo();
	assert.equal(info.state, 'running');
	console.log('the source keeps running; getInfo of a fork: running');

	const snapshots = await Sandbox.listSnapshots().nextItems();
	assert.deepEqual(snapshots, [], 'the fork\'s snapshot is not left in the team\'s snapshots');

	await assert.rejects(Sandbox.fork('iaaaaaaaaaaaaaaaaaaaa', { count: 1 }), (err) => {
		assert.ok(err instanceof SandboxNotFoundError, `not a SandboxNotFoundError: ${err}`);
		return true;
	});
	await assert.rejects(source.fork({ count: 11 }), (err) => {
		assert.match(String(err.message), /^400: count must be/);
		return true;
	});
	console.log('unknown id: SandboxNotFoundError; count 11: 400');
	await Promise.all([source.kill(), forks[0].kill(), forks[1].kill()]);
}

main().then(() => console.log('sdk fork: ok'), (err) => {
	console.error(err);
	process.exit(1);
});
