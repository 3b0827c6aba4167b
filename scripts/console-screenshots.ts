/**
 * `npm run console:screenshots`: the console's pages as PNGs under docs/console/ (shown in
 * the README's "Console" section). Starts `writ serve` on a fresh store, makes a small
 * believable history (agents, a delegated task, pending approvals, allows and a deny, a
 * revoked task, an active break-glass), and photographs each page in Debian's chromium
 * (playwright-core), at 1280 px and, for the inbox and tasks, at 360 px.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { buildConsole } from './build-console.mjs';
import { Api, makeAgentKeys, makeAssertion, type AgentKeys } from '../test/helpers/harness.js';
import { startServe } from '../test/helpers/serve-process.js';

const OUT = join(import.meta.dirname, '..', 'docs', 'console');
const ADMIN = `wop_${'Scr33nSh0t'.repeat(4)}a1`;
const POLICY = `// tools in the task's scope are allowed, but money moves with a person's yes
@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource)
unless { resource in Writ::ToolGroup::"payments" || resource in Writ::ToolGroup::"treasury" };

@id("payments-need-approval")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.approval.granted };

@id("treasury-needs-two")
@approvals("2")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"treasury")
when { context.approval.granted };

@id("break-glass-ops")
permit (principal, action == Writ::Action::"call", resource)
when { context.break_glass };

@id("no-huge-payments")
forbid (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.num_args.hasTag("amount") && context.num_args.getTag("amount") > 1000000 };
`;

const dir = mkdtempSync(join(tmpdir(), 'writ-shots-'));
const serve = await startServe(['--data-dir', join(dir, 'store')], { ...process.env, WRIT_BOOTSTRAP_TOKEN: ADMIN, WRIT_KEY_ENCRYPTION_KEY: 'screenshots-only-not-a-secret-0123456789' });
const browser = await chromium.launch({ executablePath: process.env.WRIT_CHROMIUM ?? '/usr/bin/chromium', args: ['--headless', '--no-sandbox'] });
try {
  await buildConsole();
  mkdirSync(OUT, { recursive: true });
  const admin = new Api(serve.url, ADMIN);
  const must = async (p: Promise<{ status: number; body: any }>, status = 200) => {
    const r = await p;
    if (r.status !== status) throw new Error(`${r.status}: ${JSON.stringify(r.body)}`);
    return r.body;
  };
  await must(admin.call('PUT', '/v1/policies', { policies: POLICY }));
  const op = async (name: string, roles: string[]) => must(admin.call('POST', '/v1/operators', { name, roles }), 201);
  const alice = await op('alice', ['approver', 'requester']);
  await op('audrey', ['auditor']);
  await op('bob', ['approver']);
  const register = async (id: string, name: string, labels: string[]) => {
    const keys = await makeAgentKeys(id);
    await must(admin.call('POST', '/v1/agents', { id, name, labels, jwks: { keys: [keys.publicJwk] } }), 201);
    return keys;
  };
  const billing = await register('spiffe://acme.test/agent/billing', 'billing assistant', ['finance']);
  const payer = await register('spiffe://acme.test/agent/payer', 'payment runner', ['finance']);
  const ci = await register('spiffe://acme.test/agent/ci-bot', 'CI helper', ['engineering']);
  const aliceApi = new Api(serve.url, alice.token);
  const tokenFor = async (agent: AgentKeys, taskId: string) =>
    (await admin.form('/oauth/token', {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await makeAssertion(agent, serve.url),
      task_id: taskId,
    })).body.access_token as string;
  const task = async (by: Api, agent: AgentKeys, intent: string, scope: Record<string, string[]>, max = 20) =>
    must(by.call('POST', '/v1/tasks', { agent_id: agent.id, intent, scope, ttl_seconds: 3600, max_actions: max }), 201);
  const PAY = { tools: ['payments.*', 'treasury.*', 'erp.*'], resources: ['acct:*', 'invoice:*'], destinations: ['bank.example', 'erp.acme.test'] };

  // a delegated payment that waits for a yes
  const march = await task(aliceApi, billing, 'Pay the March supplier invoices approved in the ERP', PAY);
  const billingApi = new Api(serve.url, await tokenFor(billing, march.id));
  await must(billingApi.call('POST', '/v1/authorize', { tool: 'erp.list_invoices', arguments: { month: '2026-03', status: 'approved' }, audience: 'https://erp.acme.test', resource: 'invoice:2026-03', destination: 'erp.acme.test' }));
  const child = await must(billingApi.call('POST', `/v1/tasks/${march.id}/delegations`, { agent_id: payer.id, intent: 'Transfer the three approved March invoices', scope: PAY, ttl_seconds: 1800, max_actions: 5 }), 201);
  const payerApi = new Api(serve.url, await tokenFor(payer, child.id));
  const ask = (api: Api, tool: string, args: unknown, resource: string) => must(api.call('POST', '/v1/authorize', { tool, arguments: args, audience: 'https://tools.acme.test/payments', resource, destination: 'bank.example' }));
  await ask(payerApi, 'payments.transfer', { amount: 18_450, currency: 'EUR', to: { name: 'Northwind Traders', iban: 'DE89370400440532013000' }, reference: 'INV-2026-0311', memo: 'March hosting and support, see contract NW-2024-17 §4.2: monthly fee, 37 support hours at the agreed rate, and the one-off migration of the reporting cluster agreed on 2026-02-27 in the steering meeting' }, 'acct:ops-eur');
  await ask(payerApi, 'payments.transfer', { amount: 2_300, currency: 'EUR', to: { name: 'Contoso Cleaning', iban: 'FR1420041010050500013M02606' }, reference: 'INV-2026-0318' }, 'acct:ops-eur');
  const denied = await ask(payerApi, 'payments.transfer', { amount: 4_800_000, currency: 'EUR', to: { name: 'Unknown Ltd', iban: 'GB33BUKB20201555555555' }, reference: 'URGENT' }, 'acct:ops-eur');
  void denied;
  // a treasury move with one approval of two
  const treasury = await task(admin, billing, 'Rebalance the EUR and USD operating accounts for month end', PAY);
  const tApi = new Api(serve.url, await tokenFor(billing, treasury.id));
  const sweep = await ask(tApi, 'treasury.sweep', { from: 'acct:ops-eur', to: 'acct:ops-usd', amount: 250_000, fx: 'EURUSD' }, 'acct:ops-eur');
  await must(aliceApi.call('POST', `/v1/approvals/${sweep.approval_id}/approve`, { comment: 'matches the month-end plan' }));
  // a finished task and a revoked one
  const ciTask = await task(admin, ci, 'Open the weekly dependency-update pull request', { tools: ['github.*'], resources: ['repo:acme/*'], destinations: ['api.github.com'] });
  const ciApi = new Api(serve.url, await tokenFor(ci, ciTask.id));
  await must(ciApi.call('POST', '/v1/authorize', { tool: 'github.create_pull_request', arguments: { repo: 'acme/api', title: 'Weekly dependency updates' }, audience: 'https://tools.acme.test/github', resource: 'repo:acme/api', destination: 'api.github.com' }));
  await must(admin.call('POST', `/v1/tasks/${ciTask.id}/complete`, {}));
  const odd = await task(admin, ci, 'Tidy stale branches in acme/web', { tools: ['github.*'], resources: ['repo:acme/*'], destinations: ['api.github.com'] });
  await must(admin.call('POST', `/v1/tasks/${odd.id}/revoke`, { reason: 'asked for repo deletion' }));
  // break-glass
  await must(admin.call('POST', '/v1/break-glass', { agent_id: ci.id, justification: 'Production deploy pipeline is down; the CI helper needs to re-run the release job by hand (INC-4471).', scope: { tools: ['github.rerun_workflow'] }, duration_seconds: 1800 }), 201);
  await must(admin.call('POST', '/v1/audit/checkpoints', {}), 201);

  const shoot = async (name: string, hash: string, opts: { width?: number; token?: string; wait?: string; before?: (p: import('playwright-core').Page) => Promise<void> } = {}) => {
    const ctx = await browser.newContext({ viewport: { width: opts.width ?? 1280, height: opts.width === 360 ? 780 : 860 }, deviceScaleFactor: 1 });
    try {
      const page = await ctx.newPage();
      await page.goto(`${serve.url}/console${hash}`);
      if (name !== 'sign-in') {
        await page.fill('#token', opts.token ?? ADMIN);
        await page.click('button[type=submit]');
        await page.waitForSelector('header.top');
      }
      if (opts.wait) await page.waitForSelector(opts.wait);
      if (opts.before) await opts.before(page);
      await page.waitForLoadState('networkidle').catch(() => undefined);
      await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
      console.log(`docs/console/${name}.png`);
    } finally {
      await ctx.close();
    }
  };
  await shoot('sign-in', '');
  await shoot('inbox', '#/approvals', { token: alice.token, wait: 'article.approval' });
  await shoot('inbox-360', '#/approvals', { token: alice.token, wait: 'article.approval', width: 360 });
  await shoot('tasks', '#/tasks', { wait: '#task-list tbody tr' });
  await shoot('tasks-360', '#/tasks', { wait: '#task-list tbody tr', width: 360 });
  await shoot('task', `#/tasks/${march.id}`, { wait: '#timeline li' });
  await shoot('audit', '#/audit', { wait: '#audit-list tbody tr', before: async (p) => (await p.click('#verify-chain'), void (await p.waitForSelector('#chain-result'))) });
  await shoot('trace', `#/audit/trace/${sweep.decision_id}`, { wait: '#trace-steps li' });
  await shoot('break-glass', '#/break-glass', { wait: 'article[data-break-glass-id]' });
  await shoot('agents', '#/agents', { wait: '#agent-list tbody tr' });
  await shoot('policies', '#/policies', {
    wait: '#policy-text',
    before: async (p) => {
      const text = await p.inputValue('#policy-text');
      await p.fill('#policy-text', text.replace('when { context.break_glass };', 'when { context.break_glas };'));
      await p.click('#policy-validate');
      await p.waitForSelector('#policy-diagnostics');
    },
  });
  await shoot('operators', '#/operators', { wait: '#operator-list tbody tr' });
} finally {
  await browser.close();
  await serve.kill();
  rmSync(dir, { recursive: true, force: true });
}
