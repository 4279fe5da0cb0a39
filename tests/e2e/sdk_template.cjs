// The npm e2b SDK's Template builder against warren (unchanged, env vars
// only): build a template from `base` with runCmd, copy, setEnvs and a
// start command, print the build logs, then Sandbox.create(alias) and
// check the marker, the copied file, A=1 and the start command's server;
// then a template whose runCmd fails must give a BuildError with the
// step's exit code.
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Template, Sandbox, waitForURL } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

function slotAddress(sandboxId) {
	return execFileSync('psql', [process.env.WARREN_PG_URL, '-tAc',
		`SELECT host(slot_address) FROM sandboxes WHERE id = '${sandboxId}'`]).toString().trim();
}

(async () => {
	const alias = process.env.TEMPLATE_ALIAS;
	const context = fs.mkdtempSync(path.join(os.tmpdir(), 'warren-template-ctx-'));
	fs.writeFileSync(path.join(context, 'hello.txt'), 'hello from the build context\n');
	const logs = [];
	const onBuildLogs = (entry) => { logs.push(String(entry)); console.log('build:', String(entry)); };

	// The alias in a comment keeps the first layer new to this run (cold).
	const make = (last) => Template({ fileContextPath: context })
		.fromTemplate(process.env.TEMPLATE_BASE || 'base')
		.runCmd(`echo built > /home/user/marker # ${alias}`)
		.copy('hello.txt', '/home/user/')
		.setEnvs({ A: '1' })
		.runCmd(last)
		.setStartCmd('python3 -m http.server 8000', waitForURL('http://127.0.0.1:8000/marker'));
	const last = 'whoami > /home/user/whoami && echo "A is $A" > /home/user/a-at-build';
	let started = Date.now();
	const built = await Template.build(make(last + ' && echo one > /home/user/rev'), alias,
		{ onBuildLogs, cpuCount: 1, memoryMB: 512 });
	console.log(`BUILD_COLD_MS=${Date.now() - started}`);
	assert.equal(built.templateId, alias);
	assert.ok(logs.some((l) => l.includes('[1/4] RUN echo built') && !l.includes('CACHED')),
		'the step log came through, not cached');

	// One changed step: the layers before it are reused, it runs.
	logs.length = 0;
	started = Date.now();
	await Template.build(make(last + ' && echo two > /home/user/rev'), alias, { onBuildLogs, cpuCount: 1, memoryMB: 512 });
	console.log(`BUILD_ONE_CHANGED_MS=${Date.now() - started}`);
	assert.ok(logs.some((l) => l.includes('CACHED [1/4] RUN echo built')), 'step 1 reused');
	assert.ok(logs.some((l) => l.includes('CACHED [2/4] COPY hello.txt')), 'step 2 reused');
	assert.ok(logs.some((l) => l.includes('[4/4] RUN whoami') && !l.includes('CACHED')), 'step 4 ran');

	// Unchanged: every layer reused.
	logs.length = 0;
	started = Date.now();
	await Template.build(make(last + ' && echo two > /home/user/rev'), alias, { onBuildLogs, cpuCount: 1, memoryMB: 512 });
	console.log(`BUILD_CACHED_MS=${Date.now() - started}`);
	assert.ok(logs.some((l) => l.includes('CACHED [4/4] RUN whoami')), 'step 4 reused');
	assert.ok(!logs.some((l) => /\] \[\d\/4\] (RUN|COPY)/.test(l)), 'no step ran');

	// skipCache: every step runs again.
	logs.length = 0;
	await Template.build(make(last + ' && echo two > /home/user/rev'), alias,
		{ onBuildLogs, cpuCount: 1, memoryMB: 512, skipCache: true });
	assert.ok(!logs.some((l) => l.includes('CACHED')), 'skipCache reuses nothing');

	// A Dockerfile (the SDK turns it into steps; FROM debian:* is `base`).
	const dockerfile = Template({ fileContextPath: context }).fromDockerfile(
		'FROM debian:bookworm\nRUN echo from-dockerfile > /df\nWORKDIR /app\n' +
		'COPY hello.txt .\nENV X=1\nRUN echo "$X $(whoami)" > /app/x\n');
	await Template.build(dockerfile, alias + '-df', { onBuildLogs: (e) => console.log('df:', String(e)) });
	console.log('Dockerfile build ok');

	const baseStarted = Date.now();
	const plain = await Sandbox.create('base', { timeoutMs: 60_000 });
	console.log(`CREATE_BASE_MS=${Date.now() - baseStarted}`);
	await plain.kill();
	const createStarted = Date.now();
	const sandbox = await Sandbox.create(alias, { timeoutMs: 60_000 });
	console.log(`CREATE_MS=${Date.now() - createStarted}`);
	const direct = new Sandbox({
		sandboxId: sandbox.sandboxId,
		envdAccessToken: sandbox.envdAccessToken ?? sandbox.connectionConfig?.accessToken,
		envdVersion: sandbox.envdApi?.version ?? '0.1.0',
		sandboxUrl: `http://${slotAddress(sandbox.sandboxId)}:49983`,
		requestTimeoutMs: 20000,
	});
	const run = async (cmd) => (await direct.commands.run(cmd)).stdout;
	assert.equal(await run('cat /home/user/marker'), 'built\n');
	assert.equal(await run('cat /home/user/hello.txt'), 'hello from the build context\n');
	assert.equal(await run('stat -c %U /home/user/hello.txt'), 'user\n');
	assert.equal(await run('cat /home/user/whoami'), 'user\n');
	assert.equal(await run('cat /home/user/a-at-build'), 'A is 1\n');
	assert.equal(await run('cat /home/user/rev'), 'two\n');
	assert.equal(await run('echo A=$A'), 'A=1\n');
	assert.equal(await run('curl -s http://127.0.0.1:8000/marker'), 'built\n');
	console.log('sandbox of the built template ok');
	await sandbox.kill();

	const bad = Template().fromTemplate(process.env.TEMPLATE_BASE || 'base')
		.runCmd('echo about to fail; exit 7');
	const badLogs = [];
	await assert.rejects(
		Template.build(bad, alias + '-bad', { onBuildLogs: (e) => badLogs.push(String(e)) }),
		(err) => { console.log('failing build:', err.name, err.message); return err.name === 'BuildError' && /exited with code 7/.test(err.message); });
	assert.ok(badLogs.some((l) => l.includes('about to fail')), 'the failing step output is in the logs');
	console.log('failing build ok');
	fs.rmSync(context, { recursive: true, force: true });
})().catch((err) => {
	console.error('sdk_template: FAILED', err);
	process.exit(1);
});
