import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { verifyChain } from '../src/audit/verify-chain.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { Api, makeAgentKeys, makeAssertion } from './helpers/harness.js';
import { spawnChild, type Child } from './helpers/child.js';

const TOKEN = 'wop_ONfjxqeuPF6WU_4ErUjUGeeFJz534gL6_Hs3pv4bnYI';

async function startServe(dataDir: string, owner: TestContext, env: NodeJS.ProcessEnv = {}): Promise<{ child: Child; url: string }> {
  const child = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', dataDir], {
    env: { ...process.env, WRIT_BOOTSTRAP_TOKEN: TOKEN, WRIT_DATABASE_URL: '', ...env },
    owner,
  });
  const line = await child.waitForLine(/listening on http:\/\//, { stream: 'stdout' });
  return { child, url: /listening on (http:\/\/[^\s]+)/.exec(line)![1]! };
}

type Outcome =
  | { kind: 'answer'; status: number; body: { decision?: string; decision_id?: string }; connectionClose: boolean }
  | { kind: 'refused' } // no connection: the listener is closed
  | { kind: 'unanswered'; code: string } // the connection closed before a response began
  | { kind: 'truncated'; code: string }; // a response began and did not finish: never allowed

function post(agent: http.Agent, url: string, token: string, body: unknown): Promise<Outcome> {
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    const req = http.request(`${url}/v1/authorize`, {
      method: 'POST',
      agent,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
    });
    let began = false;
    req.on('response', (res) => {
      began = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('aborted', () => resolve({ kind: 'truncated', code: 'aborted' }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ kind: 'truncated', code: e.code ?? e.message }));
      res.on('end', () => {
        if (!res.complete) return resolve({ kind: 'truncated', code: 'incomplete' });
        try {
          resolve({ kind: 'answer', status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()), connectionClose: res.headers.connection === 'close' });
        } catch {
          resolve({ kind: 'truncated', code: 'bad json' });
        }
      });
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (began) return resolve({ kind: 'truncated', code: e.code ?? e.message });
      resolve(e.code === 'ECONNREFUSED' ? { kind: 'refused' } : { kind: 'unanswered', code: e.code ?? e.message });
    });
    req.end(data);
  });
}

describe('graceful drain on SIGTERM (issue 15 item 4)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-drain-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('under load: every request gets a full answer or a clean refusal, every allow is audited, exit 0', async (t) => {
    const dataDir = join(dir, 'load');
    const { child, url } = await startServe(dataDir, t, { WRIT_SHUTDOWN_GRACE_MS: '60000' });
    const admin = new Api(url, TOKEN);
    const agentKeys = await makeAgentKeys('spiffe://acme.test/agent/drain');
    assert.equal((await admin.call('POST', '/v1/agents', { id: agentKeys.id, jwks: { keys: [agentKeys.publicJwk] } })).status, 201);
    const task = (await admin.call('POST', '/v1/tasks', { agent_id: agentKeys.id, intent: 'drain', scope: { tools: ['*'] }, ttl_seconds: 600, max_actions: 100_000 })).body;
    const tok = await admin.form('/oauth/token', {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await makeAssertion(agentKeys, url),
      task_id: task.id,
    });
    const token = tok.body.access_token as string;
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 16 });
    t.after(() => keepAlive.destroy());
    const outcomes: Outcome[] = [];
    let termSent = false;
    let afterTerm = 0;
    const worker = async (w: number) => {
      for (let i = 0; ; i++) {
        const o = await post(keepAlive, url, token, { tool: 'db.read', arguments: { w, i }, audience: 'aud' });
        outcomes.push(o);
        if (termSent) afterTerm++;
        // the server is gone (or going) for this worker: stop
        if (o.kind !== 'answer') return;
      }
    };
    const workers = Array.from({ length: 16 }, (_, w) => worker(w));
    const allows = () => outcomes.filter((o) => o.kind === 'answer' && o.body.decision === 'allow').length;
    // wait for load (event: answers counted as they arrive), with a generous bound
    const deadline = Date.now() + 120_000;
    while (allows() < 200) {
      if (Date.now() > deadline || outcomes.some((o) => o.kind !== 'answer')) throw new Error(`no steady load; stderr:\n${child.stderr()}`);
      await new Promise((r) => setImmediate(r));
    }
    process.kill(child.pid, 'SIGTERM');
    termSent = true;
    const drainingLine = await child.waitForLine(/draining \(\d+ requests in flight/, { stream: 'stderr' });
    const inFlightAtTerm = Number(/draining \((\d+) requests in flight/.exec(drainingLine)![1]);
    await Promise.all(workers);
    const status = await child.exited;
    assert.equal(status.code, 0, child.stderr());
    assert.match(child.stderr(), /drained in \d+ ms/);

    const truncated = outcomes.filter((o) => o.kind === 'truncated');
    assert.deepEqual(truncated, [], 'no response was cut');
    const answers = outcomes.filter((o): o is Extract<Outcome, { kind: 'answer' }> => o.kind === 'answer');
    for (const a of answers) assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.ok(afterTerm > 0, 'requests were still going when SIGTERM came');
    // every worker ended on a clean refusal or on an answer that closed its connection
    assert.ok(outcomes.filter((o) => o.kind === 'refused' || o.kind === 'unanswered').length <= 16);
    // requests in flight when SIGTERM came are answered, with Connection: close (with 16
    // workers there almost always are some; when the signal fell between their requests,
    // there were none to answer that way)
    if (inFlightAtTerm > 0) assert.ok(answers.some((a) => a.connectionClose), `${inFlightAtTerm} requests were in flight at SIGTERM: they were answered with Connection: close`);

    const store = new SqliteStore({ path: join(dataDir, 'writ.db') });
    try {
      const ids = answers.map((a) => a.body.decision_id!);
      for (const id of ids) {
        const entries = await store.listAudit({ decisionId: id, type: 'decision' });
        assert.equal(entries.length, 1, `audit entry for ${id}`);
      }
      // a request without an answer was never decided: the store holds exactly the answered decisions
      const all = await store.listAudit({ type: 'decision', limit: 100_000 });
      assert.equal(all.length, ids.length, 'no decision was made without its answer reaching the client');
      const report = await verifyChain(store);
      assert.equal(report.ok, true, JSON.stringify(report));
    } finally {
      await store.close();
    }
  });

  it('/readyz answers 503 at once; a request that never finishes is cut at the grace period, exit 1', async (t) => {
    const { child, url } = await startServe(join(dir, 'grace'), t, { WRIT_SHUTDOWN_GRACE_MS: '5000', WRIT_SHUTDOWN_DELAY_MS: '4000' });
    const { port } = new URL(url);
    // a request in flight that never completes (the token endpoint reads its form first): headers with `Expect: 100-continue`, then no body.
    // `100 Continue` comes back once the server has the request (RFC 9110 §10.1.1).
    const hung = net.connect(Number(port), '127.0.0.1');
    t.after(() => hung.destroy());
    let got = '';
    const closed = new Promise<void>((r) => hung.on('close', () => r()));
    hung.on('error', () => undefined);
    await new Promise<void>((resolve) => {
      hung.on('data', (d) => {
        got += d.toString();
        if (got.includes('100 Continue')) resolve();
      });
      hung.write(`POST /oauth/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\nexpect: 100-continue\r\n\r\n`);
    });
    const before = await fetch(`${url}/readyz`);
    assert.equal(before.status, 200);
    process.kill(child.pid, 'SIGTERM');
    const drainingLine = await child.waitForLine(/draining \(\d+ requests in flight/, { stream: 'stderr' });
    const inFlightAtTerm = Number(/draining \((\d+) requests in flight/.exec(drainingLine)![1]);
    const during = await fetch(`${url}/readyz`);
    assert.equal(during.status, 503);
    assert.deepEqual(await during.json(), { status: 'draining' });
    assert.equal(during.headers.get('connection'), 'close');
    const status = await child.exited;
    assert.equal(status.code, 1, child.stderr());
    assert.match(child.stderr(), /draining \(1 requests in flight/);
    assert.match(child.stderr(), /grace period of 5000 ms over/);
    await closed;
    assert.doesNotMatch(got, /HTTP\/1\.1 [2-5]\d\d/, 'the hung request got no answer: it was cut');
  });

  it('refuses a bad WRIT_SHUTDOWN_GRACE_MS before starting', async () => {
    await Promise.all(
      ['-1', '1.5', '30s', '99999999'].map(async (bad, i) => {
        const c = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', join(dir, `bad-${i}`)], {
          env: { ...process.env, WRIT_DATABASE_URL: '', WRIT_SHUTDOWN_GRACE_MS: bad },
        });
        const s = await c.exited;
        assert.notEqual(s.code, 0, bad);
        assert.match(c.stderr(), /WRIT_SHUTDOWN_GRACE_MS must be a whole number of milliseconds/, bad);
        assert.doesNotMatch(c.stderr(), /\n\s+at /, 'no stack trace');
      }),
    );
  });
});
