/**
 * The gateway with Writ in the same process (the `InProcessAuthorizer`): what the gateway
 * costs when it does not cross a process boundary to decide. For the gateway benchmark
 * only: it creates its own Writ on a fresh SQLite store (durable writes, like `writ
 * serve`), an agent and a task, and serves one upstream.
 *
 *   node --import tsx bench/lib/gateway-embedded.ts --data-dir DIR --pins FILE --upstream-cmd JSON|--upstream-url URL [--http]
 *
 * stdio by default (the task token is its own); `--http` prints
 * `{"listening": "<url>", "token": "<task token>"}` on stderr. With `--stats FILE`, the
 * wall time and the CPU time of every decision it asked for (µs, in order: `{"wall_us":
 * [...], "cpu_us": [...]}`) are written to FILE as it ends: the in-process decision the
 * gateway's overhead is measured against (issue 12, item 6).
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { InProcessAuthorizer } from '../../src/gateway/authorizer.js';
import { parseGatewayConfig } from '../../src/gateway/config.js';
import { silentLog } from '../../src/gateway/log.js';
import { McpGateway } from '../../src/gateway/mcp-gateway.js';
import { serveMcpHttp, serveMcpStdio } from '../../src/gateway/mcp-serve.js';
import { Writ } from '../../src/app/writ.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';

const argv = process.argv.slice(2);
const at = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const dataDir = at('--data-dir')!;
const issuer = 'http://writ.embedded.invalid';
const writ = new Writ(new SqliteStore({ path: join(dataDir, 'writ.db') }), { issuer });
await writ.init();
const adminToken = `wop_${randomBytes(16).toString('hex')}`;
await writ.identity.bootstrapAdmin(adminToken);
const admin = await writ.identity.authenticateOperator(adminToken);
const { privateKey, publicKey } = await generateKeyPair('Ed25519', { extractable: true });
const agentId = 'spiffe://bench.test/agent/embedded';
await writ.identity.registerAgent(admin, { id: agentId, jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1' }] } });
const task = await writ.tasks.createTask(admin, { agent_id: agentId, intent: 'bench', scope: { tools: ['bench.*'], resources: [], destinations: ['127.0.0.1:*', 'stdio:local'] }, ttl_seconds: 3600, max_actions: 100_000 });
const iat = Math.floor(Date.now() / 1000);
const assertion = await new SignJWT({ jti: randomBytes(12).toString('hex') })
  .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
  .setIssuer(agentId)
  .setSubject(agentId)
  .setAudience(issuer)
  .setIssuedAt(iat)
  .setExpirationTime(iat + 60)
  .sign(privateKey);
const { access_token: token } = await writ.tokens.issueTaskToken({
  grant_type: 'client_credentials',
  client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  client_assertion: assertion,
  task_id: task.id,
});

const cmd = at('--upstream-cmd');
const upstream = cmd
  ? { transport: 'stdio', command: (JSON.parse(cmd) as string[])[0], args: (JSON.parse(cmd) as string[]).slice(1), destination: 'stdio:local' }
  : { transport: 'http', url: at('--upstream-url') };
const config = parseGatewayConfig({ writ: { url: issuer }, pins_file: at('--pins'), upstreams: [{ name: 'bench', ...upstream }] }, join(dataDir, 'gateway.json'));
const inner = new InProcessAuthorizer(writ);
const decisionUs: number[] = [];
const decisionCpuUs: number[] = [];
// the same authorizer, each decision timed (what the gateway waits for before it forwards):
// wall time, and the process's CPU meanwhile (calls come one at a time: nothing else runs).
// CPU is read on one call in CPU_SAMPLE_EVERY only: each read is a getrusage call, whose
// cost would land in the gateway's CPU beside the decision and not in the pass-through's.
const CPU_SAMPLE_EVERY = 4;
let calls = 0;
const authorizer: InProcessAuthorizer = Object.create(inner);
authorizer.authorize = async (t, a) => {
  const t0 = performance.now();
  const c0 = calls++ % CPU_SAMPLE_EVERY === 0 ? process.cpuUsage() : null;
  try {
    return await inner.authorize(t, a);
  } finally {
    if (c0) {
      const c = process.cpuUsage(c0);
      decisionCpuUs.push(c.user + c.system);
    }
    decisionUs.push(Math.round((performance.now() - t0) * 1000));
  }
};
const stats = at('--stats');
const exit = () => {
  if (stats) writeFileSync(stats, JSON.stringify({ wall_us: decisionUs, cpu_us: decisionCpuUs }));
  process.exit(0);
};
const gateway = new McpGateway({ config, authorizer, log: silentLog });
await gateway.start();
process.on('SIGTERM', exit);
if (argv.includes('--http')) {
  const running = await serveMcpHttp(gateway, { path: '/mcp' });
  process.stderr.write(`${JSON.stringify({ listening: running.url, token })}\n`);
} else {
  await serveMcpStdio(gateway, () => token);
  process.stdin.once('end', exit);
}
