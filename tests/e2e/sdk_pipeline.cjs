// The npm e2b SDK against warren-api: Sandbox.create / setTimeout / list /
// kill through E2B_API_URL, commands.run through the sandbox's agent.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Sandbox } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

function slotAddress(sandboxId) {
	return execFileSync('psql', [process.env.WARREN_PG_URL, '-tAc',
		`SELECT host(slot_address) FROM sandboxes WHERE id = '${sandboxId}'`]).toString().trim();
}

(async () => {
	const created = await Sandbox.create('minimal', { timeoutMs: 60_000, metadata: { via: 'sdk' } });
	assert.match(created.sandboxId, /^i[a-z0-9]{20}$/);
	console.log('Sandbox.create ok:', created.sandboxId);

	const direct = new Sandbox({
		sandboxId: created.sandboxId,
		envdAccessToken: created.envdAccessToken ?? created.connectionConfig?.accessToken,
		envdVersion: created.envdApi?.version ?? '0.1.0',
		sandboxUrl: `http://${slotAddress(created.sandboxId)}:49983`,
		requestTimeoutMs: 20000,
	});
	const result = await direct.commands.run('echo sdk-ok');
	assert.equal(result.stdout, 'sdk-ok\n');
	console.log('commands.run ok');

	await created.setTimeout(120_000);
	console.log('setTimeout ok');

	const paginator = Sandbox.list({ query: { metadata: { via: 'sdk' } } });
	const items = await paginator.nextItems();
	assert.ok(items.some((s) => s.sandboxId === created.sandboxId), JSON.stringify(items));
	console.log('Sandbox.list ok');

	await created.kill();
	assert.equal(await created.isRunning().catch(() => false), false);
	console.log('kill ok');
})().catch((err) => {
	console.error('sdk_pipeline: FAILED', err);
	process.exit(1);
});
