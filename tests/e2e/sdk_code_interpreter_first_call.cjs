// The first runCode after Sandbox.create, many times over (the npm
// @e2b/code-interpreter package, unchanged): each round creates a sandbox,
// times create and the first runCode (which may wait for the default
// kernel), checks the answer and kills it. Rounds: WARREN_CI_ROUNDS
// (default 3). A first call that does not answer within 30 s fails the run;
// the sandbox's console (agent + interpreter logs) and its sockets are
// printed first.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const { Sandbox } = require(path.join(process.env.E2B_CI_DIR, 'node_modules', '@e2b/code-interpreter'));

function diagnose(sandboxId) {
	const log = path.join(process.env.WARREN_STATE_DIR ?? '', sandboxId, 'console.log');
	if (fs.existsSync(log))
		console.error('--- sandbox console.log\n' + fs.readFileSync(log, 'utf8').slice(-3000));
	for (const args of [['-tnpio'], ['-tnio', 'state', 'all', '( dport = :49999 or sport = :49999 )']]) {
		try {
			console.error(`--- ss ${args.join(' ')} (host)\n` + execFileSync('ss', args).toString().slice(-3000));
		} catch (e) {
			console.error('ss failed:', e.message);
		}
	}
}

function percentile(sorted, p) {
	return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

(async () => {
	const rounds = Number(process.env.WARREN_CI_ROUNDS || 3);
	const creates = [], firsts = [];
	for (let i = 0; i < rounds; i++) {
		let started = Date.now();
		const sbx = await Sandbox.create({ timeoutMs: 120_000 });
		creates.push(Date.now() - started);
		try {
			started = Date.now();
			let first;
			try {
				first = await sbx.runCode('print(1+1); 6*7', { timeoutMs: 30_000, requestTimeoutMs: 30_000 });
			} catch (err) {
				console.error(`round ${i}: first runCode failed after ${Date.now() - started} ms`);
				diagnose(sbx.sandboxId);
				throw err;
			}
			firsts.push(Date.now() - started);
			assert.deepEqual(first.logs.stdout, ['2\n']);
			assert.equal(first.text, '42');
			console.log(`round ${i}: create ${creates[i]} ms, first runCode ${firsts[i]} ms`);
		} finally {
			await sbx.kill();
		}
	}
	creates.sort((a, b) => a - b);
	firsts.sort((a, b) => a - b);
	console.log(`${rounds} rounds ok: create p50 ${percentile(creates, 50)} ms max ${creates[rounds - 1]} ms; ` +
		`first runCode p50 ${percentile(firsts, 50)} ms max ${firsts[rounds - 1]} ms`);
})().catch((err) => {
	console.error('sdk_code_interpreter_first_call: FAILED', err);
	process.exit(1);
});
