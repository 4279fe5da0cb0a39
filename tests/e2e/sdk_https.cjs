// The unchanged npm e2b SDK over HTTPS only: E2B_API_URL is warren-api with
// TLS, E2B_SANDBOX_URL warren-proxy's TLS listener or a terminator in front, and the
// test CA comes from NODE_EXTRA_CA_CERTS (the environment holds only E2B_*
// and that). argv[2]: the SDK folder. Creates a sandbox, runs a command,
// kills it.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { Sandbox } = require(path.join(process.argv[2], 'node_modules', 'e2b'));

(async () => {
	const sandbox = await Sandbox.create('minimal', { timeoutMs: 60_000 });
	console.log('Sandbox.create over https ok:', sandbox.sandboxId);
	const result = await sandbox.commands.run('echo https-ok');
	assert.equal(result.stdout, 'https-ok\n');
	console.log('commands.run over https through warren-proxy ok');
	await sandbox.kill();
	console.log('kill ok');
})().catch((err) => {
	console.error('sdk_https: FAILED', err);
	process.exit(1);
});
