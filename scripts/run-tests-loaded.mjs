#!/usr/bin/env node
// `npm run test:loaded`: the whole suite (or the files matching the arguments, as
// scripts/run-tests.mjs takes them) while two CPU-bound processes keep the cores busy, as on
// a shared CI machine. The suite must pass like this: its waits follow events, not the clock.
// The load processes are killed when the run ends, however it ends.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const RUNNER = fileURLToPath(new URL('./run-tests.mjs', import.meta.url));
const LOADERS = Number(process.env.WRIT_TEST_LOAD_PROCESSES ?? 2);

const load = Array.from({ length: LOADERS }, () =>
  spawn(process.execPath, ['-e', 'for (;;) Math.sqrt(Math.random());'], { detached: true, stdio: 'ignore' }),
);
const stopLoad = () => {
  for (const p of load) {
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
};
process.on('exit', stopLoad);
console.log(`# load: ${LOADERS} CPU-bound processes (pids ${load.map((p) => p.pid).join(', ')})`);

const run = spawn(process.execPath, [RUNNER, ...process.argv.slice(2)], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  // the runner gets the signal too (same process group from a terminal) or from us, stops its files, then exits
  process.on(signal, () => run.kill(signal));
}
run.on('exit', (code, signal) => {
  stopLoad();
  process.exit(code ?? (signal ? 1 : 0));
});
