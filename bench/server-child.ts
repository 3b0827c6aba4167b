/**
 * A Writ server for the HTTP benchmarks, in its own process (so that on two cores
 * the server and the load generator each get one). The store comes from the JSON in
 * WRIT_BENCH_STORE (see lib/backend.ts). Prints one JSON line when listening:
 * `{"ready":true,"port":N,"pid":N,"admin_token":"..."|null}` (null when the store
 * had an operator already, i.e. a second instance on the same data). Exits when its
 * stdin closes (the parent went away) or on SIGTERM. Answers a `stats` line on stdin
 * with `{"stats": CommitStats}` (group-commit batches since the last ask); `profile on`
 * starts per-stage CPU accounting and `profile` answers `{"profile": {...}}` and stops it.
 */
import type { AddressInfo } from 'node:net';
import { enableStageProfile, takeStageProfile } from '../src/core/stage-profile.js';
import { createHttpServer } from '../src/server/http-server.js';
import { Writ } from '../src/app/writ.js';
import { openSpec, type StoreSpec } from './lib/backend.js';
import { probeCommits } from './lib/commit-probe.js';
import { TASK_MAX_ACTIONS } from './lib/fixture.js';
import { BENCH_ISSUER } from './lib/identity.js';

const spec = JSON.parse(process.env.WRIT_BENCH_STORE ?? '') as StoreSpec;
const store = await openSpec(spec);
const probe = probeCommits(store);
// Cedar on worker threads (WRIT_BENCH_POLICY_WORKERS, default 1: the second core), as `writ serve` with WRIT_POLICY_WORKERS
const policyWorkers = Number(process.env.WRIT_BENCH_POLICY_WORKERS ?? 1);
const writ = new Writ(store, { issuer: BENCH_ISSUER, maxTaskActions: TASK_MAX_ACTIONS, policyWorkers });
await writ.init();
const boot = await writ.identity.bootstrapAdmin();
writ.startBackgroundWork();
const server = createHttpServer(writ, { log: (msg, err) => console.error(`[server-child ${process.pid}] ${msg}`, err instanceof Error ? err.message : (err ?? '')) });
await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
const port = (server.address() as AddressInfo).port;
process.stdout.write(`${JSON.stringify({ ready: true, port, pid: process.pid, admin_token: boot?.token ?? null })}\n`);

let closing = false;
const shutdown = () => {
  if (closing) return;
  closing = true;
  server.closeAllConnections();
  server.close(() => void writ.close().finally(() => process.exit(0)));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
// A line `stats` on stdin answers one JSON line with the group-commit figures since the last one.
let input = '';
process.stdin.on('data', (d: Buffer) => {
  input += d.toString('utf8');
  let nl: number;
  while ((nl = input.indexOf('\n')) >= 0) {
    const line = input.slice(0, nl).trim();
    input = input.slice(nl + 1);
    if (line === 'stats') process.stdout.write(`${JSON.stringify({ stats: probe.take() })}\n`);
    // per-stage CPU accounting (src/core/stage-profile.ts): `profile on`, then `profile` answers and resets it
    if (line === 'profile on') enableStageProfile(true);
    if (line === 'profile') {
      const stages = takeStageProfile();
      enableStageProfile(false);
      process.stdout.write(`${JSON.stringify({ profile: stages })}\n`);
    }
  }
});
process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
