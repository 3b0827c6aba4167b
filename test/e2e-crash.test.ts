import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { verifyChain } from '../src/audit/verify-chain.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { Api, makeAgentKeys, makeAssertion } from './helpers/harness.js';
import { spawnChild, type Child } from './helpers/child.js';

const TOKEN = 'wop_ONfjxqeuPF6WU_4ErUjUGeeFJz534gL6_Hs3pv4bnYI';

async function startServe(dataDir: string, owner: TestContext): Promise<{ child: Child; url: string }> {
  const child = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', dataDir], {
    env: { ...process.env, WRIT_BOOTSTRAP_TOKEN: TOKEN, WRIT_DATABASE_URL: '' },
    owner,
  });
  const line = await child.waitForLine(/listening on http:\/\//, { stream: 'stdout' });
  return { child, url: /listening on (http:\/\/[^\s]+)/.exec(line)![1]! };
}

describe('durability: kill -9 under load loses nothing acknowledged (SQLite)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-crash-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every allow answered before the kill has its decision and audit entry, and the chain verifies', async (t) => {
    const { child, url } = await startServe(dir, t);
    const admin = new Api(url, TOKEN);
    const agent = await makeAgentKeys('spiffe://acme.test/agent/crash');
    assert.equal((await admin.call('POST', '/v1/agents', { id: agent.id, jwks: { keys: [agent.publicJwk] } })).status, 201);
    const task = (await admin.call('POST', '/v1/tasks', { agent_id: agent.id, intent: 'crash', scope: { tools: ['*'] }, ttl_seconds: 600, max_actions: 100_000 })).body;
    const tok = await admin.form('/oauth/token', {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await makeAssertion(agent, url),
      task_id: task.id,
    });
    const agentApi = new Api(url, tok.body.access_token);
    const allowed: string[] = [];
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        try {
          const r = await agentApi.call('POST', '/v1/authorize', { tool: 'db.read', arguments: { w, i }, audience: 'aud' });
          if (r.status === 200 && r.body.decision === 'allow') allowed.push(r.body.decision_id);
        } catch {
          return; // the connection died with the process
        }
      }
    };
    let working = 16;
    const workers = Array.from({ length: 16 }, (_, w) => worker(w).finally(() => working--));
    while (allowed.length < 300) {
      // every worker lost its connection before the kill: the server died on its own
      if (working === 0) throw new Error(`the server stopped answering after ${allowed.length} allows; stderr:\n${child.stderr()}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    process.kill(child.pid, 'SIGKILL');
    stop = true;
    await Promise.all(workers);
    await child.exited;

    const store = new SqliteStore({ path: join(dir, 'writ.db') });
    try {
      for (const id of allowed) {
        const d = await store.getDecision(id);
        assert.ok(d && d.decision === 'allow', `decision ${id} survived`);
        const entries = await store.listAudit({ decisionId: id, type: 'decision' });
        assert.equal(entries.length, 1, `audit entry for ${id}`);
      }
      const report = await verifyChain(store);
      assert.equal(report.ok, true, JSON.stringify(report));
    } finally {
      await store.close();
    }
  });
});
