#!/usr/bin/env node
// `npm run bench`: runs bench/run.ts compiled, as the service runs in production (dist/ is
// plain JavaScript), not through the tsx loader, whose transform wraps every function in a
// `__name` helper and so adds CPU to every decision measured (about 14 us at c32). src/ and
// bench/ are transpiled into a mirror of the checkout (scripts/build-tests.mjs), the
// benchmark and every process it starts (Writ, gateways, proxies) run from it, and the
// mirror is removed when the run ends, also on Ctrl-C.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildTests } from './build-tests.mjs';

const out = await buildTests(`.bench-build-${process.pid}`, ['src', 'bench']);
const cleanup = () => rmSync(out, { recursive: true, force: true });
const child = spawn(process.execPath, [join(out, 'bench', 'run.js'), ...process.argv.slice(2)], { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
child.on('error', (err) => {
  cleanup();
  console.error(`bench: ${err.message}`);
  process.exit(1);
});
child.on('exit', (code, signal) => {
  cleanup();
  process.exit(code ?? (signal ? 1 : 0));
});
