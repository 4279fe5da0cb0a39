// The npm e2b SDK's Template builder (unchanged, env vars only) building
// from an OCI image in a registry the test started: fromImage(ref,
// credentials).runCmd(...) builds, Sandbox.create(alias) runs it and reads
// the marker; wrong credentials and an unknown image give a BuildError
// with the registry's reason.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Template, Sandbox } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

// The sandbox's agent straight at its slot address (no proxy in this stack).
function direct(sandbox) {
	const address = execFileSync('psql', [process.env.WARREN_PG_URL, '-tAc',
		`SELECT host(slot_address) FROM sandboxes WHERE id = '${sandbox.sandboxId}'`]).toString().trim();
	return new Sandbox({
		sandboxId: sandbox.sandboxId,
		envdAccessToken: sandbox.envdAccessToken ?? sandbox.connectionConfig?.accessToken,
		envdVersion: sandbox.envdApi?.version ?? '0.1.0',
		sandboxUrl: `http://${address}:49983`,
		requestTimeoutMs: 20000,
	});
}

(async () => {
	const alias = process.env.TEMPLATE_ALIAS;
	const image = process.env.OCI_IMAGE;
	const credentials = { username: process.env.OCI_USER, password: process.env.OCI_PASSWORD };
	const logs = [];
	const onBuildLogs = (entry) => { logs.push(String(entry)); console.log('build:', String(entry)); };
	const make = () => Template().fromImage(image, credentials).runCmd('echo ok > /marker');

	let started = Date.now();
	await Template.build(make(), alias, { onBuildLogs, cpuCount: 1, memoryMB: 512 });
	console.log(`BUILD_OCI_COLD_MS=${Date.now() - started}`);
	assert.ok(logs.some((l) => l.includes('unpacking')), 'the image was unpacked');
	assert.ok(logs.some((l) => l.includes('[1/1] RUN echo ok')), 'the RUN step ran');

	started = Date.now();
	const sandbox = await Sandbox.create(alias, { timeoutMs: 60_000 });
	console.log(`CREATE_OCI_MS=${Date.now() - started}`);
	const agent = direct(sandbox);
	assert.equal(await agent.files.read('/marker'), 'ok\n');
	const run = await agent.commands.run('cat /marker; id -u; echo "$FOO"');
	assert.equal(run.stdout, 'ok\n0\nfrom-image\n');
	await sandbox.kill();

	// The same image again: its unpacked tree and the RUN layer are reused.
	logs.length = 0;
	started = Date.now();
	await Template.build(make(), alias, { onBuildLogs, cpuCount: 1, memoryMB: 512 });
	console.log(`BUILD_OCI_CACHED_MS=${Date.now() - started}`);
	assert.ok(logs.some((l) => l.includes('its tree is cached')), 'the image tree was reused');
	assert.ok(logs.some((l) => l.includes('CACHED [1/1] RUN echo ok')), 'the RUN layer was reused');

	const fails = async (template, name, pattern) => {
		await assert.rejects(Template.build(template, name, { onBuildLogs, cpuCount: 1, memoryMB: 512 }),
			(err) => {
				console.log(`${name}:`, err.name, err.message);
				return err.name === 'BuildError' && pattern.test(err.message);
			});
	};
	await fails(Template().fromImage(image, { username: credentials.username, password: 'wrong-password' })
		.runCmd('true'), alias + '-badauth', /pulling image .* failed: .*(unauthorized|authentication required)/);
	await fails(Template().fromImage(image.replace(/:[^:/]+$/, ':no-such-tag'), credentials).runCmd('true'),
		alias + '-unknown', /pulling image .* failed: .*manifest unknown/);
	// A Debian image (the test's debootstrap tree), when the test made one.
	if (process.env.OCI_DEBIAN_IMAGE) {
		started = Date.now();
		await Template.build(Template().fromImage(process.env.OCI_DEBIAN_IMAGE, credentials)
			.runCmd('echo ok > /marker && apt-get --version | head -n1 > /apt'), alias + '-deb',
			{ onBuildLogs, cpuCount: 1, memoryMB: 512 });
		console.log(`BUILD_OCI_DEBIAN_COLD_MS=${Date.now() - started}`);
		const deb = await Sandbox.create(alias + '-deb', { timeoutMs: 60_000 });
		const debAgent = direct(deb);
		const out = await debAgent.commands.run('cat /marker /apt; test -s /etc/debian_version && echo debian');
		assert.match(out.stdout, /^ok\napt \d[^\n]*\ndebian\n$/);
		await deb.kill();
	}
	console.log('OCI_TEMPLATE_OK');
})().catch((err) => {
	console.error('FAIL:', err && err.stack ? err.stack : err);
	process.exit(1);
});
