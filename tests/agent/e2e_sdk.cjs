// e2e: the real npm `e2b` SDK's Sandbox against a warren-agent started by
// e2e_sdk.sh (no API: the Sandbox is constructed with the agent's URL,
// token and version, as Sandbox.create would after POST /sandboxes).
// Env: E2B_SDK_DIR (npm prefix holding node_modules/e2b), AGENT_URL,
// AGENT_TOKEN, AGENT_VERSION, WORK_DIR (scratch directory).
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { Sandbox, CommandExitError } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

async function main() {
	const work = process.env.WORK_DIR;
	const sandbox = new Sandbox({
		sandboxId: 'iwarrenagente2e000000',
		envdAccessToken: process.env.AGENT_TOKEN,
		envdVersion: process.env.AGENT_VERSION,
		sandboxUrl: process.env.AGENT_URL,
		requestTimeoutMs: 20000,
	});

	const hi = await sandbox.commands.run('echo hi');
	assert.equal(hi.exitCode, 0);
	assert.equal(hi.stdout, 'hi\n');
	console.log('commands.run(echo hi) ok');

	const py = await sandbox.commands.run("python3 -c 'print(6*7)'");
	assert.equal(py.stdout, '42\n');
	console.log('commands.run(python3) ok');

	await assert.rejects(sandbox.commands.run('echo oops >&2; exit 3'), (err) => {
		assert.ok(err instanceof CommandExitError, String(err));
		assert.equal(err.exitCode, 3);
		assert.equal(err.stderr, 'oops\n');
		return true;
	});
	console.log('commands.run(exit 3) -> CommandExitError ok');

	const envs = await sandbox.commands.run('echo $GREETING', { envs: { GREETING: 'hello' }, cwd: work });
	assert.equal(envs.stdout, 'hello\n');

	const cat = await sandbox.commands.run('cat', { background: true, stdin: true });
	await sandbox.commands.sendStdin(cat.pid, 'through stdin\n');
	await sandbox.commands.closeStdin(cat.pid);
	const catResult = await cat.wait();
	assert.equal(catResult.stdout, 'through stdin\n');
	console.log('sendStdin/closeStdin ok');

	const sleeper = await sandbox.commands.run('sleep 100', { background: true });
	const listed = await sandbox.commands.list();
	assert.ok(listed.some((p) => p.pid === sleeper.pid), JSON.stringify(listed));
	assert.equal(await sandbox.commands.kill(sleeper.pid), true);
	await assert.rejects(sleeper.wait(), CommandExitError);
	console.log('commands.list/kill ok');

	// PTY: resize then `stty size`, an interactive `read`, kill.
	let screen = '';
	const decoder = new TextDecoder();
	const until = async (what, ms = 10000) => {
		for (let waited = 0; !screen.includes(what); waited += 20) {
			if (waited > ms) throw new Error(`pty: no ${JSON.stringify(what)} in ${JSON.stringify(screen)}`);
			await new Promise((r) => setTimeout(r, 20));
		}
	};
	const terminal = await sandbox.pty.create({
		cols: 80, rows: 24, cwd: work,
		envs: { PS1: 'pty$ ' },
		onData: (data) => { screen += decoder.decode(data, { stream: true }); },
	});
	await sandbox.pty.resize(terminal.pid, { cols: 120, rows: 40 });
	await sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode('stty size\n'));
	await until('40 120');
	// Typed once `read` prompts: input typed while readline still holds
	// the line can be lost (as on any terminal).
	await sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode('p=ready; read -p "$p> " x; echo got:$x\n'));
	await until('ready> ');
	await sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode('typed\n'));
	await until('got:typed');
	// Round trip of one keystroke through the terminal's echo.
	const before = screen.length;
	const sent = process.hrtime.bigint();
	await sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode('#'));
	for (const start = Date.now(); !screen.slice(before).includes('#') && Date.now() - start < 10000;)
		await new Promise((r) => setImmediate(r));
	assert.ok(screen.slice(before).includes('#'), 'the terminal echoes input');
	console.log(`pty echo round trip ${Number(process.hrtime.bigint() - sent) / 1e6} ms`);
	await assert.rejects(sandbox.pty.resize(terminal.pid, { cols: 0, rows: 40 }));
	assert.equal(await sandbox.pty.kill(terminal.pid), true);
	const ended = await terminal.wait().then((r) => r, (e) => e);
	assert.equal(ended.exitCode, -1, String(ended));
	console.log('pty.create/resize/sendInput/kill ok');

	const file = path.join(work, 'sdk', 'hello.txt');
	const info = await sandbox.files.write(file, 'hello from the sdk');
	assert.equal(info.path, file);
	assert.equal(await sandbox.files.read(file), 'hello from the sdk');
	const raw = path.join(work, 'sdk', 'raw.bin');
	await sandbox.files.write(raw, 'octet stream body', { useOctetStream: true });
	assert.equal(await sandbox.files.read(raw), 'octet stream body');
	const many = await sandbox.files.write([
		{ path: path.join(work, 'many', 'a.txt'), data: 'A' },
		{ path: path.join(work, 'many', 'empty.txt'), data: '' },
	]);
	assert.equal(many.length, 2);
	assert.equal(await sandbox.files.read(path.join(work, 'many', 'a.txt')), 'A');
	assert.equal(await sandbox.files.read(path.join(work, 'many', 'empty.txt')), '');
	await assert.rejects(sandbox.files.read(path.join(work, 'missing.txt')), (err) => {
		assert.equal(err.name, 'FileNotFoundError', String(err));
		return true;
	});
	const asRoot = await sandbox.commands.run('id -u', { user: 'root' });
	assert.equal(asRoot.stdout, '0\n');
	console.log('files.write/read ok');

	assert.equal(await sandbox.files.exists(file), true);
	assert.equal(await sandbox.files.exists(path.join(work, 'nope')), false);
	assert.equal(await sandbox.files.makeDir(path.join(work, 'sdk', 'dir')), true);
	assert.equal(await sandbox.files.makeDir(path.join(work, 'sdk', 'dir')), false);
	const moved = await sandbox.files.rename(file, path.join(work, 'sdk', 'dir', 'moved.txt'));
	assert.equal(moved.name, 'moved.txt');
	const entries = await sandbox.files.list(path.join(work, 'sdk'), { depth: 2 });
	const names = entries.map((e) => e.name).sort();
	assert.deepEqual(names, ['dir', 'moved.txt', 'raw.bin']);
	const stat = await sandbox.files.getInfo(raw);
	assert.equal(stat.size, 'octet stream body'.length);
	assert.equal(stat.type, 'file');
	await sandbox.files.remove(path.join(work, 'sdk', 'dir'));
	assert.equal(await sandbox.files.exists(path.join(work, 'sdk', 'dir')), false);
	console.log('files.exists/makeDir/rename/list/getInfo/remove ok');

	const watched = path.join(work, 'watched');
	await sandbox.files.makeDir(path.join(watched, 'sub'));
	const events = [];
	const handle = await sandbox.files.watchDir(watched, (e) => events.push(e), { recursive: true });
	await sandbox.files.write(path.join(watched, 'sub', 'w.txt'), 'watched');
	await sandbox.files.remove(path.join(watched, 'sub', 'w.txt'));
	for (let i = 0; i < 100 && !events.some((e) => e.type === 'remove'); i++)
		await new Promise((r) => setTimeout(r, 50));
	await handle.stop();
	const seen = events.map((e) => `${e.type}:${e.name}`);
	assert.ok(seen.includes('create:sub/w.txt'), seen.join(','));
	assert.ok(seen.includes('write:sub/w.txt'), seen.join(','));
	assert.ok(seen.includes('remove:sub/w.txt'), seen.join(','));
	console.log('files.watchDir ok');

	// gzip both ways: Content-Encoding on the upload, Accept-Encoding on the read.
	const zipped = path.join(work, 'sdk', 'zipped.txt');
	const text = 'compress me '.repeat(10000);
	await sandbox.files.write(zipped, text, { gzip: true });
	assert.equal(await sandbox.files.read(zipped, { gzip: true }), text);
	const plain = await sandbox.commands.run(`wc -c < ${zipped}`);
	assert.equal(plain.stdout.trim(), String(text.length));
	console.log('files.write/read with gzip ok');

	const url = await sandbox.downloadUrl(raw, { useSignatureExpiration: 60 });
	const response = await fetch(url);
	assert.equal(response.status, 200);
	assert.equal(await response.text(), 'octet stream body');
	console.log('signed downloadUrl ok');
}

main().then(
	() => console.log('e2e_sdk: all passed'),
	(err) => {
		console.error('e2e_sdk: FAILED', err);
		process.exit(1);
	},
);
