// Runs one command in a sandbox through the npm e2b SDK, straight at the
// sandbox's agent (SANDBOX_URL), and prints its stdout.
'use strict';
const path = require('node:path');
const { Sandbox } = require(path.join(process.env.E2B_SDK_DIR, 'node_modules', 'e2b'));

(async () => {
	const sandbox = new Sandbox({
		sandboxId: process.env.SANDBOX_ID,
		envdAccessToken: process.env.ACCESS_TOKEN,
		envdVersion: process.env.ENVD_VERSION,
		sandboxUrl: process.env.SANDBOX_URL,
		requestTimeoutMs: 20000,
	});
	const result = await sandbox.commands.run(process.env.COMMAND);
	process.stdout.write(result.stdout);
})().catch((err) => {
	console.error(err);
	process.exit(1);
});
