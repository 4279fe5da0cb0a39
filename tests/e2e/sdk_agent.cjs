// The npm e2b SDK, unchanged, against a sandbox of warren (template base)
// through warren-api and, when E2B_SANDBOX_URL is set, warren-proxy: the
// in-sandbox calls beyond commands and plain files: a PTY (resize, `stty
// size`, an interactive `read`, kill), files.watchDir seeing a create,
// modify and remove, a gzip upload and download, and a server bound to
// 127.0.0.1 inside reached at getHost(port) through the proxy
// (PROXY_ADDRESS: host:port of warren-proxy).
'use strict';
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const { Sandbox } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const encode = (text) => new TextEncoder().encode(text);

async function pty(sbx) {
	let screen = '';
	const decoder = new TextDecoder();
	const until = async (what) => {
		for (const start = Date.now(); !screen.includes(what);) {
			if (Date.now() - start > 20000) throw new Error(`pty: no ${JSON.stringify(what)} in ${JSON.stringify(screen)}`);
			await sleep(20);
		}
	};
	const terminal = await sbx.pty.create({
		cols: 80, rows: 24,
		onData: (data) => { screen += decoder.decode(data, { stream: true }); },
	});
	await sbx.pty.resize(terminal.pid, { cols: 120, rows: 40 });
	await sbx.pty.sendInput(terminal.pid, encode('stty size\n'));
	await until('40 120');
	// Typed only once `read` prints its prompt: input typed while
	// readline still holds the line can be lost (as on any terminal).
	await sbx.pty.sendInput(terminal.pid, encode('p=ready; read -p "$p> " x; echo got:$x\n'));
	await until('ready> ');
	await sbx.pty.sendInput(terminal.pid, encode('typed\n'));
	await until('got:typed');
	const times = [];
	for (let i = 0; i < 5; i++) {
		const before = screen.length;
		const sent = process.hrtime.bigint();
		await sbx.pty.sendInput(terminal.pid, encode('#'));
		for (const start = Date.now(); !screen.slice(before).includes('#') && Date.now() - start < 10000;)
			await new Promise((r) => setImmediate(r));
		assert.ok(screen.slice(before).includes('#'), 'the terminal echoes input');
		times.push(Number(process.hrtime.bigint() - sent) / 1e6);
	}
	times.sort((a, b) => a - b);
	console.log(`pty keystroke echo round trip: median ${times[2].toFixed(1)} ms (5 keys: ${times.map((t) => t.toFixed(1)).join(' ')})`);
	assert.equal(await sbx.pty.kill(terminal.pid), true);
	const ended = await terminal.wait().then((r) => r, (e) => e);
	assert.equal(ended.exitCode, -1, String(ended));
	console.log('pty: stty size after resize(40, 120) = "40 120", read got its input, kill ok');
}

async function watch(sbx) {
	const dir = '/home/user/watched';
	await sbx.files.makeDir(dir);
	const events = [];
	const handle = await sbx.files.watchDir(dir, (e) => events.push(`${e.type}:${e.name}`));
	await sbx.files.write(`${dir}/a.txt`, 'one');
	await sbx.commands.run(`echo two >> ${dir}/a.txt`);
	await sbx.files.remove(`${dir}/a.txt`);
	for (let i = 0; i < 200 && !events.includes('remove:a.txt'); i++)
		await sleep(50);
	await handle.stop();
	for (const wanted of ['create:a.txt', 'write:a.txt', 'remove:a.txt'])
		assert.ok(events.includes(wanted), `${wanted} in ${events.join(',')}`);
	console.log(`files.watchDir: ${events.join(', ')}`);
}

async function gzip(sbx) {
	const text = 'gzip round trip '.repeat(50000);
	await sbx.files.write('/home/user/zipped.txt', text, { gzip: true });
	assert.equal(await sbx.files.read('/home/user/zipped.txt', { gzip: true }), text);
	const size = await sbx.commands.run('wc -c < /home/user/zipped.txt');
	assert.equal(size.stdout.trim(), String(text.length));
	console.log(`gzip upload and download of ${text.length} bytes ok`);
}

function get(proxy, host, urlPath) {
	const [hostname, port] = proxy.split(':');
	return new Promise((resolve, reject) => {
		const req = http.request({ hostname, port: Number(port), path: urlPath, headers: { Host: host }, timeout: 10000 },
			(res) => {
				let body = '';
				res.on('data', (chunk) => { body += chunk; });
				res.on('end', () => resolve({ status: res.statusCode, body }));
			});
		req.on('error', reject);
		req.on('timeout', () => req.destroy(new Error('timeout')));
		req.end();
	});
}

async function loopbackServer(sbx) {
	const proxy = process.env.PROXY_ADDRESS;
	if (!proxy) {
		console.log('SKIP (loopback forwarding part): no warren-proxy');
		return;
	}
	await sbx.files.write('/home/user/site/hello.txt', 'served on 127.0.0.1');
	const server = await sbx.commands.run(
		'python3 -m http.server --bind 127.0.0.1 8000 --directory /home/user/site',
		{ background: true, timeoutMs: 0 });
	const host = sbx.getHost(8000);
	let last;
	const start = Date.now();
	for (let i = 0; i < 100; i++) {
		last = await get(proxy, host, '/hello.txt').catch((err) => ({ status: 0, body: String(err) }));
		if (last.status === 200) break;
		await sleep(200);
	}
	assert.equal(last.status, 200, `GET http://${host}/hello.txt via ${proxy}: ${last.status} ${last.body}`);
	assert.equal(last.body, 'served on 127.0.0.1');
	console.log(`127.0.0.1:8000 inside reached at ${host} through warren-proxy (${Date.now() - start} ms after start)`);
	await server.kill();
}

(async () => {
	const sbx = await Sandbox.create('base', { timeoutMs: 180_000 });
	console.log(`Sandbox.create(base): ${sbx.sandboxId}` +
		(process.env.E2B_SANDBOX_URL ? ` via ${process.env.E2B_SANDBOX_URL}` : ''));
	try {
		await pty(sbx);
		await watch(sbx);
		await gzip(sbx);
		await loopbackServer(sbx);
	} finally {
		await sbx.kill();
	}
	console.log('sdk_agent: all passed');
})().catch((err) => {
	console.error('sdk_agent: FAILED', err);
	process.exit(1);
});
