import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { signWebhook, verifyWebhook, WebhookNotifier, webhookKey } from '../src/service/webhooks.js';
import { Api, setup } from './helpers/harness.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

describe('Standard Webhooks signatures', () => {
  it('matches the specification test vector, and refuses near variants', () => {
    const key = webhookKey(SECRET);
    const sig = signWebhook(key, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}');
    assert.equal(sig, 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
    assert.equal(verifyWebhook(key, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}', `v1,bogus ${sig}`), true);
    assert.equal(verifyWebhook(key, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265331, '{"test": 2432232314}', sig), false, 'another timestamp');
    assert.equal(verifyWebhook(key, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test":2432232314}', sig), false, 'another body');
    assert.equal(verifyWebhook(key, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}', sig.replace('v1,', 'v2,')), false, 'another version');
    for (const bad of ['MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'whsec_', 'whsec_c2hvcnQ=', 'whsec_!!!!', '']) assert.throws(() => webhookKey(bad), /WRIT_WEBHOOK_SECRET must be/, bad);
  });
});

interface Hit {
  headers: IncomingMessage['headers'];
  body: string;
}

describe('webhooks from the audit log: signed, retried, never blocking, delivery audited', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let receiver: Server;
  let url: string;
  const hits: Hit[] = [];
  /** what the receiver answers next; `hang` never answers */
  let answers: (number | 'hang')[] = [];
  let notifier: WebhookNotifier;

  before(async () => {
    env = await setup('sqlite');
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        hits.push({ headers: req.headers, body });
        const a = answers.shift() ?? 204;
        if (a === 'hang') return;
        res.writeHead(a).end();
      });
    });
    await new Promise<void>((ok) => receiver.listen(0, '127.0.0.1', ok));
    url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    notifier = new WebhookNotifier(env.store, {
      url,
      secret: SECRET,
      retryDelaysMs: [20, 20],
      timeoutMs: 500,
      pollMs: 60_000, // the test calls settle() itself
      record: (type, data, entry) => env.writ.audit.securityEvent(type, 'system', data, { ...(entry.taskId ? { taskId: entry.taskId } : {}) }),
    });
    await notifier.start();
  });
  after(async () => {
    await notifier?.close();
    receiver?.closeAllConnections();
    await new Promise((ok) => receiver?.close(ok));
    await env?.teardown();
  });

  it('sends task.revoked signed per Standard Webhooks after a failed attempt, and audits the delivery', async () => {
    hits.length = 0;
    answers = [500, 204];
    const task = await env.createTask();
    await env.createTask(); // task.created is not a default event
    assert.equal((await env.admin.call('POST', `/v1/tasks/${task.id}/revoke`, { reason: 'done' })).status, 200);
    await notifier.settle();
    assert.equal(hits.length, 2, 'one failure, one retry');
    const [first, second] = hits as [Hit, Hit];
    assert.equal(first.headers['webhook-id'], second.headers['webhook-id'], 'a retry keeps its id');
    const id = String(second.headers['webhook-id']);
    const ts = Number(second.headers['webhook-timestamp']);
    assert.ok(Math.abs(ts - Date.now() / 1000) < 300);
    // computed here from the spec, not with the code under test
    const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
    const expected = `v1,${createHmac('sha256', key).update(`${id}.${ts}.${second.body}`).digest('base64')}`;
    assert.equal(second.headers['webhook-signature'], expected);
    const event = JSON.parse(second.body);
    assert.equal(event.type, 'task.revoked');
    assert.equal(event.data.task_id, task.id);
    const delivered = await env.store.listAudit({ type: 'webhook.delivered', limit: 100 });
    assert.equal(delivered.length, 1);
    assert.deepEqual([delivered[0]!.data.event, delivered[0]!.data.webhook_id, delivered[0]!.data.attempts], ['task.revoked', id, 2]);
  });

  it('a receiver that never answers blocks nothing; it is given up on and audited as webhook.failed', async () => {
    hits.length = 0;
    answers = ['hang', 'hang', 'hang'];
    const task = await env.createTask();
    const token = await env.taskToken(task.id);
    const started = Date.now();
    assert.equal((await env.admin.call('POST', `/v1/tasks/${(await env.createTask()).id}/revoke`, {})).status, 200);
    const pending = notifier.settle();
    // decisions go on while the receiver hangs
    const az = await new Api(env.url, token).call('POST', '/v1/authorize', { tool: 'billing.read', arguments: {}, audience: 'aud' });
    assert.equal(az.body.decision, 'allow');
    assert.ok(Date.now() - started < 30_000);
    await pending;
    assert.equal(hits.length, 3, 'three attempts');
    const failed = await env.store.listAudit({ type: 'webhook.failed', limit: 100 });
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.data.error, 'timeout');
  });

  it('refuses a receiver URL that is not http(s)', () => {
    assert.throws(() => new WebhookNotifier(env.store, { url: 'file:///etc/passwd', secret: SECRET }), /must be an http\(s\) URL/);
  });
});

describe('writ serve: webhook settings are checked at start', () => {
  it('refuses a URL without a secret, and a secret that is not `whsec_…`', async (t) => {
    const { spawnChild } = await import('./helpers/child.js');
    const { REPO } = await import('./helpers/serve-process.js');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'writ-hooks-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    for (const [extra, pattern] of [
      [{ WRIT_WEBHOOK_URL: 'https://hooks.example/x' }, /WRIT_WEBHOOK_URL needs WRIT_WEBHOOK_SECRET/],
      [{ WRIT_WEBHOOK_URL: 'https://hooks.example/x', WRIT_WEBHOOK_SECRET: 'hunter2' }, /WRIT_WEBHOOK_SECRET must be `whsec_`/],
    ] as const) {
      const c = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', join(dir, 'd')], { cwd: REPO, env: { ...process.env, WRIT_DATABASE_URL: '', ...extra }, owner: t });
      assert.notEqual((await c.exited).code, 0);
      assert.match(c.stderr(), pattern);
      assert.doesNotMatch(c.stderr(), /hunter2/, 'the secret is not echoed');
    }
  });
});
