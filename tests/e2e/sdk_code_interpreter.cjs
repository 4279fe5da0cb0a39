// The npm @e2b/code-interpreter package, unchanged, against warren:
// Sandbox.create() (template code-interpreter-v1), then runCode through the
// sandbox's code-interpreter server (port 49999) at its slot address.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const { Sandbox } = require(path.join(process.env.E2B_CI_DIR, 'node_modules', '@e2b/code-interpreter'));

function slotAddress(sandboxId) {
	return execFileSync('psql', [process.env.WARREN_PG_URL, '-tAc',
		`SELECT host(slot_address) FROM sandboxes WHERE id = '${sandboxId}'`]).toString().trim();
}

(async () => {
	let started = Date.now();
	const created = await Sandbox.create({ timeoutMs: 180_000 });
	console.log(`Sandbox.create (code-interpreter-v1) ok: ${created.sandboxId} in ${Date.now() - started} ms`);
	// With E2B_SANDBOX_URL (warren-proxy, routing by the SDK's E2b-Sandbox-*
	// headers) the created object is used as is: env vars only. Without
	// it, a second object points at the slot's port 49999 directly.
	const sbx = process.env.E2B_SANDBOX_URL ? created : new Sandbox({
		sandboxId: created.sandboxId,
		envdAccessToken: created.envdAccessToken ?? created.connectionConfig?.accessToken,
		envdVersion: created.envdApi?.version ?? '0.1.0',
		sandboxUrl: `http://${slotAddress(created.sandboxId)}:49999`,
		requestTimeoutMs: 60_000,
	});
	console.log(process.env.E2B_SANDBOX_URL ? `via warren-proxy ${process.env.E2B_SANDBOX_URL}` : 'direct to the slot');
	try {
		started = Date.now();
		const first = await sbx.runCode('print(1+1); 6*7');
		assert.deepEqual(first.logs.stdout, ['2\n']);
		assert.equal(first.text, '42');
		assert.equal(first.error, undefined);
		console.log(`runCode('print(1+1); 6*7') ok: stdout ${JSON.stringify(first.logs.stdout)}, text ${first.text}, ` +
			`first call ${Date.now() - started} ms`);

		await sbx.runCode('x = 41');
		assert.equal((await sbx.runCode('x + 1')).text, '42');
		console.log('state kept between calls ok');

		// Flushed prints: one callback each, in the order printed.
		const seen = [];
		await sbx.runCode("import sys\nfor i in range(2):\n    print(f'o{i}', flush=True)\n" +
			"    print(f'e{i}', file=sys.stderr, flush=True)", {
			onStdout: (m) => seen.push('out:' + m.line), onStderr: (m) => seen.push('err:' + m.line),
		});
		assert.deepEqual(seen, ['out:o0\n', 'err:e0\n', 'out:o1\n', 'err:e1\n']);
		console.log('stdout/stderr callbacks in order ok:', JSON.stringify(seen));

		const failed = await sbx.runCode('1/0');
		assert.equal(failed.error.name, 'ZeroDivisionError');
		assert.match(failed.error.traceback, /ZeroDivisionError/);
		console.log('ExecutionError ok:', failed.error.name, failed.error.value);

		const plot = await sbx.runCode("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9], label='v')\n" +
			"plt.title('T')\nplt.show()");
		const png = plot.results.find((r) => r.png);
		assert.ok(png, JSON.stringify(plot.results.map((r) => r.formats())));
		assert.deepEqual([...Buffer.from(png.png, 'base64').subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
		assert.equal(png.chart?.type, 'line', JSON.stringify(png.chart));
		assert.equal(png.chart.title, 'T');
		assert.deepEqual(png.chart.elements, [{ label: 'v', points: [[1, 4], [2, 1], [3, 9]] }]);
		console.log('matplotlib PNG and Result.chart ok:', png.chart.type, JSON.stringify(png.chart.elements));

		const frame = await sbx.runCode("import pandas as pd\npd.DataFrame({'a': [1, 2]})");
		assert.match(frame.results[0].html, /<table/);
		console.log('pandas DataFrame html ok');

		const context = await sbx.createCodeContext();
		const other = await sbx.runCode('x', { context });
		assert.equal(other.error?.name, 'NameError');
		console.log('createCodeContext: independent namespace ok');

		await assert.rejects(sbx.runCode('while True: pass', { timeoutMs: 2000 }), (e) => e.name === 'TimeoutError');
		assert.equal((await sbx.runCode('x + 2')).text, '43');
		console.log('timeout interrupts the loop; the context still works');

		// Bad input: the SDK's errors for a 4xx.
		await assert.rejects(sbx.runCode('1', { language: 'cobol' }),
			(e) => e.name === 'SandboxError' && /^400/.test(e.message), 'unknown language');
		await assert.rejects(sbx.runCode('1', { context: { id: 'no-such-context', language: 'python', cwd: '/' } }),
			(e) => e.name === 'NotFoundError' && /not found/.test(e.message), 'unknown context');
		console.log('unknown language -> SandboxError 400, unknown context -> NotFoundError ok');
	} catch (err) {
		// The sandbox's console (agent + interpreter logs) explains most failures.
		const log = path.join(process.env.WARREN_STATE_DIR ?? '', created.sandboxId, 'console.log');
		if (fs.existsSync(log))
			console.error('--- sandbox console.log\n' + fs.readFileSync(log, 'utf8').slice(-4000));
		throw err;
	} finally {
		await created.kill();
	}
	console.log('kill ok');
})().catch((err) => {
	console.error('sdk_code_interpreter: FAILED', err);
	process.exit(1);
});
