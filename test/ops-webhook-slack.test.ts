/**
 * WRIT_WEBHOOK_FORMAT=slack: a Slack-compatible message carrying the tool, the masked
 * arguments and the command (or link) to approve (issue 15 item 5).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { AuditEntry } from '../src/core/types.js';
import { slackEscape, slackMessage } from '../src/service/webhook-slack.js';
import { verifyWebhook, WebhookNotifier, webhookKey } from '../src/service/webhooks.js';
import { backends, setup } from './helpers/harness.js';
import { agentFor, makeOperator, setPolicy, type Env } from './helpers/escalations.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const POLICY = `
@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource)
unless { resource in Writ::ToolGroup::"payments" };

@id("payments-need-approval")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.approval.granted };
`;

function entry(over: Partial<AuditEntry>): AuditEntry {
  return { seq: 7, ts: Date.now(), type: 'task.revoked', actor: 'operator:op_1', taskId: 'tsk_1', agentId: 'agt', decisionId: null, data: {}, prevHash: '', hash: 'h', ...over } as AuditEntry;
}

const allText = (m: { text: string; blocks: Record<string, unknown>[] }) => JSON.stringify(m);

describe('the Slack message', () => {
  it('escapes caller text: no mention, link or code-span break-out gets through', () => {
    assert.equal(slackEscape('<!channel> & <https://evil|click>'), '&lt;!channel&gt; &amp; &lt;https://evil|click&gt;');
    const m = slackMessage(
      entry({ type: 'approval.requested', decisionId: 'dec_1', data: { approval_id: 'apr_1', tool: 'pay<!here>.x`y', audience: 'aud' } }),
      { issuer: 'https://writ.example.com', arguments: { note: '<!channel> ```break``` <https://evil|x>' } },
    );
    const s = allText(m);
    assert.doesNotMatch(s, /<!channel>|<!here>|<https:\/\/evil/);
    assert.match(s, /&lt;!channel&gt;/);
    // the arguments' own fences cannot close the code block
    const argsBlock = (m.blocks[1] as { text: { text: string } }).text.text;
    assert.equal(argsBlock.match(/```/g)!.length, 2);
  });

  it('keeps every section within Slack\'s 3000 characters, however long the arguments', () => {
    const m = slackMessage(entry({ type: 'approval.requested', data: { approval_id: 'apr_1', tool: 't.x' } }), { issuer: 'https://w', arguments: { blob: 'x'.repeat(50_000) } });
    for (const b of m.blocks) {
      const t = (b as { text?: { text: string } }).text?.text;
      if (t !== undefined) assert.ok(t.length <= 3000, `${t.length}`);
    }
  });

  it('says when the log keeps only the digest; links only to an approval URL with the id encoded', () => {
    const m = slackMessage(entry({ type: 'approval.requested', data: { approval_id: 'apr_1/x', tool: 't.x', args_digest: 'sha256:ab' } }), {
      issuer: 'https://w',
      approvalUrl: 'https://console.example/approvals/{approval_id}',
    });
    assert.match(allText(m), /arguments not kept/);
    const actions = m.blocks.find((b) => b.type === 'actions') as { elements: { url: string }[] };
    assert.equal(actions.elements[0]!.url, 'https://console.example/approvals/apr_1%2Fx');
    assert.equal(slackMessage(entry({ type: 'approval.requested', data: { approval_id: 'apr_1', tool: 't' } }), { issuer: 'https://w' }).blocks.some((b) => b.type === 'actions'), false);
  });

  it('has a message for the other default events', () => {
    assert.match(slackMessage(entry({ type: 'approval.reviewed', data: { approval_id: 'apr_1', verdict: 'deny', approver: 'op_2', status: 'denied', comment: 'no <!here>' } }), { issuer: 'https://w' }).text, /apr_1 deny by op_2: denied/);
    assert.match(slackMessage(entry({ type: 'break_glass.started', data: { break_glass_id: 'bg_1', justification: 'prod down', ends_at: 0 } }), { issuer: 'https://w' }).text, /Break-glass started: bg_1/);
    assert.match(allText(slackMessage(entry({ type: 'task.revoked', data: { reason: 'agent_disabled' } }), { issuer: 'https://w' })), /tsk_1.*revoked.*agent_disabled/);
  });

  it('the notifier refuses a review link that is not http(s) or lacks {approval_id}', async () => {
    const store = {} as never;
    for (const bad of ['javascript:alert(1)//{approval_id}', 'https://console.example/approvals']) {
      assert.throws(() => new WebhookNotifier(store, { url: 'https://h', secret: SECRET, format: 'slack', slack: { issuer: 'https://w', approvalUrl: bad } }), /WRIT_WEBHOOK_APPROVAL_URL/);
    }
  });
});

for (const { backend, skip } of backends()) {
  describe(`Slack webhooks end to end (${backend})`, { skip }, () => {
    let env: Env;
    let receiver: Server;
    let notifier: WebhookNotifier;
    const bodies: { headers: Record<string, unknown>; body: string }[] = [];

    before(async () => {
      // the log keeps arguments in full: the chat message must still mask them
      env = await setup(backend, { config: { auditArgs: 'full' } });
      await setPolicy(env, POLICY);
      receiver = createServer((req, res) => {
        let body = '';
        req.on('data', (c) => (body += c));
        req.on('end', () => {
          bodies.push({ headers: req.headers, body });
          res.writeHead(200).end('ok');
        });
      });
      await new Promise<void>((ok) => receiver.listen(0, '127.0.0.1', ok));
      notifier = new WebhookNotifier(env.store, {
        url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/slack`,
        secret: SECRET,
        format: 'slack',
        slack: { issuer: env.url, approvalUrl: 'https://console.example/approvals/{approval_id}', maskRules: env.writ.config.auditMaskRules },
        pollMs: 60_000,
      });
      await notifier.start();
    });
    after(async () => {
      await notifier?.close();
      receiver?.closeAllConnections();
      await new Promise((ok) => receiver?.close(ok));
      await env?.teardown();
    });

    it('an approval request posts the tool, the masked arguments, the command and the link; a review follows', async () => {
      const t = await env.createTask({ scope: { tools: ['payments.*'], resources: [], destinations: [] } });
      const agent = await agentFor(env, t.id);
      const r = await agent.call('POST', '/v1/authorize', {
        tool: 'payments.transfer',
        arguments: { amount: 5000, to: 'acme', password: 'hunter2-secret', api_key: 'sk_live_abcdef123456' },
        audience: 'https://tools.example/payments',
      });
      assert.equal(r.body.decision, 'approval_required', JSON.stringify(r.body));
      const id = r.body.approval_id as string;
      await notifier.settle();
      const msg = bodies.find((b) => b.body.includes(id));
      assert.ok(msg, 'the approval request was posted');
      const m = JSON.parse(msg.body) as { text: string; blocks: { type: string; text?: { text: string }; elements?: { url?: string }[] }[] };
      assert.match(m.text, new RegExp(`Approval requested: payments\\.transfer \\(${id}\\)`));
      const text = m.blocks.map((b) => b.text?.text ?? '').join('\n');
      assert.match(text, /payments\.transfer/);
      assert.match(text, /"amount": 5000/);
      assert.match(text, /"to": "acme"/);
      assert.match(text, /"password": "\[masked\]"/);
      assert.match(text, new RegExp(`writ approvals approve ${id} --url ${env.url.replace(/[.]/g, '\\.')}`));
      assert.equal(m.blocks.find((b) => b.type === 'actions')!.elements![0]!.url, `https://console.example/approvals/${id}`);
      assert.doesNotMatch(msg.body, /hunter2|sk_live_abcdef123456/, 'no secret reaches the chat');
      // signed like any delivery
      assert.equal(verifyWebhook(webhookKey(SECRET), String(msg.headers['webhook-id']), Number(msg.headers['webhook-timestamp']), msg.body, String(msg.headers['webhook-signature'])), true);

      const approver = await makeOperator(env, 'alice', ['approver']);
      assert.equal((await approver.call('POST', `/v1/approvals/${id}/approve`, {})).status, 200);
      await notifier.settle();
      const reviewed = bodies.map((b) => JSON.parse(b.body) as { text: string }).find((b) => b.text.startsWith(`Approval ${id} approve`));
      assert.ok(reviewed, 'the review was posted');
      assert.match(reviewed.text, /: approved$/);
    });
  });
}

describe('writ serve: the Slack settings are checked at start', () => {
  it('refuses an unknown format, and a review link without the Slack format', async (t) => {
    const { spawnChild } = await import('./helpers/child.js');
    const { REPO } = await import('./helpers/serve-process.js');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'writ-slack-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const base = { WRIT_WEBHOOK_URL: 'https://hooks.example/x', WRIT_WEBHOOK_SECRET: SECRET };
    for (const [extra, pattern] of [
      [{ ...base, WRIT_WEBHOOK_FORMAT: 'Slack ' }, /WRIT_WEBHOOK_FORMAT is `standard` or `slack`/],
      [{ ...base, WRIT_WEBHOOK_APPROVAL_URL: 'https://c.example/{approval_id}' }, /WRIT_WEBHOOK_APPROVAL_URL goes with WRIT_WEBHOOK_FORMAT=slack/],
      [{ ...base, WRIT_WEBHOOK_FORMAT: 'slack', WRIT_WEBHOOK_APPROVAL_URL: 'https://c.example/approvals' }, /WRIT_WEBHOOK_APPROVAL_URL must be an http\(s\) URL holding/],
    ] as const) {
      const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
      delete env.WRIT_DATABASE_URL;
      const c = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', join(dir, String(Math.random()).slice(2))], { cwd: REPO, env, owner: t });
      const status = await c.exited;
      assert.notEqual(status.code, 0);
      assert.match(c.stderr(), pattern);
    }
  });
});
