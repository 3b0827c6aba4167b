import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { BOOT_TOKEN, setup } from './helpers/harness.js';
import { ok, writ, type CliResult as Result } from './helpers/cli.js';



const POLICY = `
@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource)
unless { resource in Writ::ToolGroup::"payments" || resource in Writ::ToolGroup::"prod" };

@id("payments-need-approval")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.approval.granted };

@id("prod-only-under-break-glass")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"prod")
when { context.break_glass };
`;

const AUD = 'https://tools.example/payments';
const AGENT = 'spiffe://acme.test/agent/payer';

describe('writ approvals, break-glass and presence through the CLI', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let dir: string;
  let cli: (args: string[], extra?: Record<string, string | undefined>) => Promise<Result>;
  let approverToken: string;
  let taskId: string;
  let taskToken: string;

  before(async () => {
    env = await setup('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'writ-cli-approvals-'));
    cli = (args, extra = {}) => writ(args, { WRIT_URL: env.url, WRIT_TOKEN: BOOT_TOKEN, ...extra });
    const policyFile = join(dir, 'policy.cedar');
    writeFileSync(policyFile, POLICY);
    ok(await cli(['policy', 'set', policyFile]));
    approverToken = ok(await cli(['operator', 'create', '--name', 'alice', '--role', 'approver'])).token;
    const keyFile = join(dir, 'payer.key.json');
    ok(await cli(['agent', 'keygen', '--out', keyFile]));
    ok(await cli(['agent', 'register', '--id', AGENT, '--key', keyFile]));
    const task = ok(
      await cli([
        'task', 'create', '--agent', AGENT, '--intent', 'pay the March invoices', '--tool', 'payments.*', '--tool', 'prod.*', '--tool', 'github.*',
        '--ttl', '900', '--max-actions', '10', '--require-presence',
      ]),
    );
    taskId = task.id;
    taskToken = ok(await cli(['token', '--agent', AGENT, '--key', keyFile, '--task', taskId])).access_token;
  });
  after(async () => {
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('drives a full approval: authorize -> list -> approve -> the agent reads its token -> consume once -> used', async () => {
    const args = JSON.stringify({ amount: 5000, to: 'acme', invoice: 'INV-7' });
    const asked = ok(await cli(['authorize', '--task-token', taskToken, '--tool', 'payments.transfer', '--audience', AUD, '--args', args]));
    assert.equal(asked.decision, 'approval_required');
    const id = asked.approval_id as string;

    const listed = ok(await cli(['approvals', 'list', '--status', 'pending'], { WRIT_TOKEN: approverToken }));
    const item = listed.approvals.find((a: any) => a.id === id);
    assert.ok(item, 'the approver sees it');
    assert.deepEqual(item.arguments, JSON.parse(args));
    assert.equal(item.task.intent, 'pay the March invoices');
    assert.deepEqual(item.policies, ['payments-need-approval']);

    const pending = ok(await cli(['approvals', 'show', id, '--task-token', taskToken]));
    assert.equal(pending.status, 'pending');
    assert.equal(pending.action_token, undefined);

    // the agent cannot approve its own action
    const self = await cli(['approvals', 'approve', id, '--token', taskToken]);
    assert.equal(self.code, 1);
    assert.match(self.stderr, /self_approval/);

    const approved = ok(await cli(['approvals', 'approve', id, '--comment', 'invoice checked'], { WRIT_TOKEN: approverToken }));
    assert.equal(approved.status, 'approved');
    assert.equal(approved.reviews[0].comment, 'invoice checked');

    const got = ok(await cli(['approvals', 'show', id, '--task-token', taskToken, '--wait', '5']));
    assert.equal(got.decision, 'allow');
    assert.equal(decodeJwt(got.action_token).approval_id, id);
    const consumed = ok(await cli(['consume', '--action-token', got.action_token, '--audience', AUD]));
    assert.equal(consumed.claims.approval_id, id);
    const replay = await cli(['consume', '--action-token', got.action_token, '--audience', AUD]);
    assert.equal(replay.code, 1);
    assert.match(replay.stderr, /token_already_used/);

    const used = ok(await cli(['approvals', 'show', id, '--task-token', taskToken]));
    assert.equal(used.status, 'used');
    assert.equal(used.action_token, undefined);
    const opView = ok(await cli(['approvals', 'show', id], { WRIT_TOKEN: approverToken }));
    assert.equal(opView.status, 'used');
    assert.equal(opView.used_decision_id, got.decision_id);

    // a deny settles the next one
    const next = ok(await cli(['authorize', '--task-token', taskToken, '--tool', 'payments.transfer', '--audience', AUD, '--args', '{"amount":1}']));
    const denied = ok(await cli(['approvals', 'deny', next.approval_id, '--comment', 'no'], { WRIT_TOKEN: approverToken }));
    assert.equal(denied.status, 'denied');
    const late = await cli(['approvals', 'approve', next.approval_id], { WRIT_TOKEN: approverToken });
    assert.equal(late.code, 1);
    assert.match(late.stderr, /approval_not_pending/);

    const usage = await cli(['approvals', 'show', id, '--wait', '31']);
    assert.equal(usage.code, 2);
    const badStatus = await cli(['approvals', 'list', '--status', 'maybe']);
    assert.equal(badStatus.code, 2);
  });

  it('break-glass: start (with a justification), list, end, review', async () => {
    const missing = await cli(['break-glass', 'start', '--agent', AGENT, '--tool', 'prod.*', '--duration', '600']);
    assert.equal(missing.code, 2, 'no justification: a usage error');
    assert.match(missing.stderr, /--justification/);
    const short = await cli(['break-glass', 'start', '--agent', AGENT, '--justification', 'now!', '--tool', 'prod.*', '--duration', '600']);
    assert.equal(short.code, 1);
    assert.match(short.stderr, /invalid_request/);
    const tooLong = await cli(['break-glass', 'start', '--agent', AGENT, '--justification', 'INC-9: the database is on fire, restart it', '--tool', 'prod.*', '--duration', '7200']);
    assert.equal(tooLong.code, 1);

    const before = ok(await cli(['authorize', '--task-token', taskToken, '--tool', 'prod.restart', '--audience', 'https://tools.example/prod']));
    assert.equal(before.decision, 'deny');
    const bg = ok(await cli(['break-glass', 'start', '--agent', AGENT, '--justification', 'INC-9: the database is on fire, restart it', '--tool', 'prod.*', '--duration', '600']));
    assert.equal(bg.status, 'active');
    const allowed = ok(await cli(['authorize', '--task-token', taskToken, '--tool', 'prod.restart', '--audience', 'https://tools.example/prod']));
    assert.equal(allowed.decision, 'allow');
    assert.equal(decodeJwt(allowed.action_token).break_glass, true);
    const active = ok(await cli(['break-glass', 'list', '--state', 'active']));
    assert.deepEqual(active.break_glass.map((b: any) => b.id), [bg.id]);
    const chained = await cli(['break-glass', 'start', '--agent', AGENT, '--justification', 'INC-9: the database is on fire, restart it', '--tool', 'prod.*', '--duration', '60']);
    assert.equal(chained.code, 1);
    assert.match(chained.stderr, /break_glass_active/);
    const ended = ok(await cli(['break-glass', 'end', bg.id, '--reason', 'fixed']));
    assert.equal(ended.status, 'ended');
    const after = ok(await cli(['authorize', '--task-token', taskToken, '--tool', 'prod.restart', '--audience', 'https://tools.example/prod']));
    assert.equal(after.decision, 'deny');
    const unreviewed = ok(await cli(['break-glass', 'list', '--state', 'unreviewed']));
    assert.ok(unreviewed.break_glass.some((b: any) => b.id === bg.id));
    const reviewed = ok(await cli(['break-glass', 'review', bg.id, '--notes', 'justified by INC-9']));
    assert.equal(reviewed.needs_review, false);
    assert.equal(ok(await cli(['break-glass', 'show', bg.id])).review_notes, 'justified by INC-9');
  });

  it('task presence: the owner renews, reads, and steps away', async () => {
    const shown = ok(await cli(['task', 'presence', taskId, '--show']));
    assert.equal(shown.required, true);
    const renewed = ok(await cli(['task', 'presence', taskId, '--ttl', '120']));
    assert.equal(renewed.owner_present, true);
    const away = ok(await cli(['task', 'presence', taskId, '--ttl', '0']));
    assert.equal(away.owner_present, false);
    const tooLong = await cli(['task', 'presence', taskId, '--ttl', '301']);
    assert.equal(tooLong.code, 1);
    const notOwner = await cli(['task', 'presence', taskId, '--ttl', '60'], { WRIT_TOKEN: approverToken });
    assert.equal(notOwner.code, 1);
    assert.match(notOwner.stderr, /not_task_owner/);
  });
});
