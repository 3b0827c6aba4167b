/**
 * The operator console (/console, issue 16) in a real browser: Debian's chromium through
 * playwright-core, against `writ serve` in a child process. One browser for the file; each
 * test gets its own context (its own cookies). Skipped, with the reason, where chromium is
 * not installed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { buildConsole } from '../scripts/build-console.mjs';
import { Api, makeAgentKeys, makeAssertion, type AgentKeys } from './helpers/harness.js';
import { browserSkip, launchBrowser } from './helpers/browser.js';
import { startServe, type Spawned } from './helpers/serve-process.js';

const ADMIN = `wop_${'a1B2c3D4e5'.repeat(4)}x9`;
const AUD = 'https://tools.example/payments';
const POLICY = `
@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource)
unless { resource in Writ::ToolGroup::"payments" };

@id("payments-need-approval")
permit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments")
when { context.approval.granted };
`;
const SCOPE = { tools: ['payments.*', 'github.*'], resources: ['acct:*'], destinations: ['bank.example'] };
const WAIT = { timeout: 60_000 };

describe('operator console in a browser', { skip: browserSkip() }, () => {
  let dir: string;
  let serve: Spawned & { url: string };
  let browser: Browser;
  let admin: Api;
  let agentKeys: AgentKeys;
  const ops: Record<string, { id: string; token: string }> = {};

  before(async () => {
    await buildConsole();
    dir = mkdtempSync(join(tmpdir(), 'writ-console-'));
    serve = await startServe(['--data-dir', join(dir, 'store')], { ...process.env, WRIT_BOOTSTRAP_TOKEN: ADMIN });
    admin = new Api(serve.url, ADMIN);
    browser = await launchBrowser();
    assert.equal((await admin.call('PUT', '/v1/policies', { policies: POLICY })).status, 200);
    agentKeys = await makeAgentKeys('spiffe://acme.test/agent/payer');
    const reg = await admin.call('POST', '/v1/agents', { id: agentKeys.id, name: 'payer', jwks: { keys: [agentKeys.publicJwk] } });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    for (const [name, roles] of [['alice', ['approver', 'requester']], ['audrey', ['auditor']]] as const) {
      const r = await admin.call('POST', '/v1/operators', { name, roles });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      ops[name] = { id: r.body.id, token: r.body.token };
    }
  });
  after(async () => {
    await browser?.close();
    await serve?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A task for the agent, and the agent's API with a task token for it. */
  const newTask = async (intent = 'pay the March invoices') => {
    const t = await admin.call('POST', '/v1/tasks', { agent_id: agentKeys.id, intent, scope: SCOPE, ttl_seconds: 3600, max_actions: 10 });
    assert.equal(t.status, 201, JSON.stringify(t.body));
    const tok = await admin.form('/oauth/token', {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await makeAssertion(agentKeys, serve.url),
      task_id: t.body.id,
    });
    assert.equal(tok.status, 200, JSON.stringify(tok.body));
    return { task: t.body, agent: new Api(serve.url, tok.body.access_token) };
  };
  const askToPay = async (agent: Api, args: Record<string, unknown>) => {
    const r = await agent.call('POST', '/v1/authorize', { tool: 'payments.transfer', arguments: args, audience: AUD, resource: 'acct:ops', destination: 'bank.example' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.decision, 'approval_required', JSON.stringify(r.body));
    return r.body.approval_id as string;
  };

  /** A fresh browser context signed in as `name` (through the sign-in form). */
  const signIn = async (token: string, viewport = { width: 1280, height: 900 }): Promise<{ ctx: BrowserContext; page: Page; errors: string[] }> => {
    const ctx = await browser.newContext({ viewport });
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${serve.url}/console`);
    await page.fill('#token', token);
    await page.click('button[type=submit]');
    await page.waitForSelector('header.top', WAIT);
    return { ctx, page, errors };
  };
  /** The session cookie and CSRF token of a signed-in context, for requests made by hand. */
  const sessionOf = async (ctx: BrowserContext, page: Page) => {
    const cookie = (await ctx.cookies()).find((c) => c.name === 'writ_console')!;
    const csrf = await page.evaluate(async () => (await (await fetch('/console/api/session')).json()).csrf as string);
    return { cookie: `writ_console=${cookie.value}`, csrf };
  };

  it('signs in with an operator token: a wrong one is refused, a good one gives an HttpOnly SameSite=Strict session cookie', async () => {
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      const res = await page.goto(`${serve.url}/console`);
      const csp = res!.headers()['content-security-policy'] ?? '';
      assert.match(csp, /script-src 'self'/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      await page.fill('#token', 'wop_not-a-real-token-at-all-000000000000');
      await page.click('button[type=submit]');
      await page.waitForSelector('.error', WAIT);
      assert.match(await page.textContent('.error') ?? '', /invalid_token/);
      assert.equal((await ctx.cookies()).length, 0, 'no cookie for a wrong token');

      await page.fill('#token', ops.alice!.token);
      await page.click('button[type=submit]');
      await page.waitForSelector('header.top', WAIT);
      assert.match(await page.textContent('.who') ?? '', /alice/);
      const [cookie] = await ctx.cookies();
      assert.equal(cookie?.name, 'writ_console');
      assert.equal(cookie?.httpOnly, true);
      assert.equal(cookie?.sameSite, 'Strict');
      assert.equal(cookie?.path, '/console');
      assert.equal(cookie?.secure, false, 'plain http: no Secure flag (it would never come back)');
      assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read the session');
      // the token is not kept in the page or the browser's storage
      const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
      assert.ok(!stored.includes(ops.alice!.token));

      // signing out ends the session on the server
      const { cookie: c } = await sessionOf(ctx, page);
      await page.click('#sign-out');
      await page.waitForSelector('#token', WAIT);
      const after = await fetch(`${serve.url}/console/api/session`, { headers: { cookie: c } });
      assert.equal(after.status, 401);
    } finally {
      await ctx.close();
    }
  });

  it('approve: the pending action arrives live, the approver approves with a comment, and the agent gets its action token', async () => {
    const { ctx, page, errors } = await signIn(ops.alice!.token);
    try {
      await page.waitForSelector('#inbox-empty, article.approval', WAIT);
      const { agent } = await newTask();
      const id = await askToPay(agent, { amount: 120, to: 'acme', memo: 'INV-7' });
      // no reload: the event stream brings it
      const card = page.locator(`article[data-approval-id="${id}"]`);
      await card.waitFor(WAIT);
      const text = await card.textContent();
      for (const want of ['payments.transfer', agentKeys.id, 'pay the March invoices', AUD, 'acct:ops', 'bank.example', 'payments-need-approval', '0 of 1']) {
        assert.ok(text!.includes(want), `the card shows ${want}`);
      }
      assert.match(text!, /left/, 'the time left is shown');
      await card.locator('textarea.comment').fill('invoice checked');
      await card.locator('button.approve').click();
      await page.locator(`article[data-approval-id="${id}"]`).waitFor({ state: 'detached', ...WAIT });

      const read = await agent.call('GET', `/v1/approvals/${id}`);
      assert.equal(read.status, 200);
      assert.equal(read.body.decision, 'allow', JSON.stringify(read.body));
      assert.ok(read.body.action_token, 'the agent got its action token');
      const stored = await admin.call('GET', `/v1/approvals/${id}`);
      assert.deepEqual(stored.body.reviews.map((r: any) => [r.approver, r.verdict, r.comment]), [[ops.alice!.id, 'approve', 'invoice checked']]);
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
  });

  it('deny: the agent is told no, with no token', async () => {
    const { agent } = await newTask();
    const id = await askToPay(agent, { amount: 999_999, to: 'mallory' });
    const { ctx, page } = await signIn(ops.alice!.token);
    try {
      const card = page.locator(`article[data-approval-id="${id}"]`);
      await card.waitFor(WAIT);
      await card.locator('textarea.comment').fill('not ours');
      await card.locator('button.deny').click();
      await card.waitFor({ state: 'detached', ...WAIT });
      const read = await agent.call('GET', `/v1/approvals/${id}`);
      assert.equal(read.body.status, 'denied', JSON.stringify(read.body));
      assert.equal(read.body.action_token, undefined);
    } finally {
      await ctx.close();
    }
  });

  it('revoke: the task page revokes the task and the agent is refused from then on', async () => {
    const { task, agent } = await newTask('a task to revoke');
    const gh = { tool: 'github.create_issue', arguments: {}, audience: 'https://tools.example/github', resource: 'acct:repo', destination: 'bank.example' };
    const before = await agent.call('POST', '/v1/authorize', gh);
    assert.equal(before.body.decision, 'allow', JSON.stringify(before.body));
    // the admin owns the tasks it created (a requester revokes only its own)
    const { ctx, page } = await signIn(ADMIN, { width: 360, height: 800 });
    try {
      await page.goto(`${serve.url}/console#/tasks/${task.id}`);
      await page.waitForSelector('#timeline li', WAIT);
      await page.fill('#revoke-reason', 'agent misbehaving');
      await page.click('#revoke');
      await page.waitForSelector('#revoked', WAIT);
      const r = await agent.call('POST', '/v1/authorize', gh);
      assert.equal(r.status, 401, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'task_not_active');
      // nothing is wider than the 360 px screen
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 360), 'no horizontal scroll at 360 px');
    } finally {
      await ctx.close();
    }
  });

  it('CSRF: a page of another origin cannot change anything; a request without the CSRF token or from another Origin is refused', async () => {
    const { task } = await newTask('a task a forged request tries to revoke');
    const { ctx, page } = await signIn(ADMIN);
    // another origin (another port is another origin; `localhost` another site) with a page that tries
    const port = Number(new URL(serve.url).port);
    let evil: Server | undefined;
    try {
      evil = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end(`<!doctype html><form id="f" method="POST" action="http://127.0.0.1:${port}/console/api/v1/tasks/${task.id}/revoke" enctype="text/plain"><input name='{"reason":"csrf","x":"' value='"}'></form>
<script>fetch("http://127.0.0.1:${port}/console/api/v1/tasks/${task.id}/revoke",{method:"POST",credentials:"include",headers:{"content-type":"application/json"},body:"{}"}).then(r=>{document.title="fetch "+r.status},e=>{document.title="fetch blocked"});</script>`);
      });
      await new Promise<void>((ok) => evil!.listen(0, 'localhost', ok));
      const evilPage = await ctx.newPage();
      await evilPage.goto(`http://localhost:${(evil.address() as { port: number }).port}/`);
      await evilPage.waitForFunction(() => document.title.startsWith('fetch'), undefined, WAIT);
      const submitted = evilPage.waitForNavigation(WAIT).catch(() => undefined);
      await evilPage.evaluate(() => (document.getElementById('f') as HTMLFormElement).submit());
      await submitted;
      assert.match(await evilPage.content(), /"code":"(unauthorized|origin_not_allowed|csrf_token_invalid|unsupported_media_type)"/);
      assert.equal((await admin.call('GET', `/v1/tasks/${task.id}`)).body.status, 'active', 'the forged requests changed nothing');

      // by hand, with the session cookie: another Origin, then no CSRF token, then a wrong one
      const { cookie, csrf } = await sessionOf(ctx, page);
      const revoke = (headers: Record<string, string>) =>
        fetch(`${serve.url}/console/api/v1/tasks/${task.id}/revoke`, { method: 'POST', headers: { cookie, 'content-type': 'application/json', ...headers }, body: '{}' }).then(async (r) => ({ status: r.status, body: await r.json() }));
      const cases: [Record<string, string>, string][] = [
        [{ origin: 'http://evil.example', 'x-writ-csrf': csrf }, 'origin_not_allowed'],
        [{ origin: `http://localhost:${port}`, 'x-writ-csrf': csrf }, 'origin_not_allowed'],
        [{ 'x-writ-csrf': csrf }, 'origin_not_allowed'],
        [{ origin: serve.url }, 'csrf_token_invalid'],
        // the last character changed, whatever it was (a fixed 'A' left one token in 64 unchanged)
        [{ origin: serve.url, 'x-writ-csrf': `${csrf.slice(0, -1)}${csrf.endsWith('A') ? 'B' : 'A'}` }, 'csrf_token_invalid'],
        [{ origin: serve.url, 'x-writ-csrf': '' }, 'csrf_token_invalid'],
      ];
      for (const [headers, code] of cases) {
        const r = await revoke(headers);
        assert.equal(r.status, 403, JSON.stringify([headers, r.body]));
        assert.equal(r.body.error.code, code, JSON.stringify(headers));
      }
      assert.equal((await admin.call('GET', `/v1/tasks/${task.id}`)).body.status, 'active');
      // the same request with both passes: the checks, not something else, refused the rest
      const ok = await revoke({ origin: serve.url, 'x-writ-csrf': csrf });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      // a sign-in from another origin is refused too (login CSRF)
      const login = await fetch(`${serve.url}/console/api/session`, { method: 'POST', headers: { origin: 'http://evil.example', 'content-type': 'application/json' }, body: JSON.stringify({ token: ops.alice!.token }) });
      assert.equal(login.status, 403);
      assert.equal(login.headers.get('set-cookie'), null);
    } finally {
      await ctx.close();
      await new Promise((ok) => (evil ? evil.close(ok) : ok(undefined)));
    }
  });

  it('XSS: markup in the intent and the tool arguments renders as inert text', async () => {
    const intent = `<img src=x onerror="window.__xss='intent'"><script>window.__xss='intent-script'</script>`;
    const { agent } = await newTask(intent);
    const payload = `"><svg onload="window.__xss='args'"></svg><img src=y onerror="window.__xss='args-img'">`;
    const id = await askToPay(agent, { amount: 5, to: payload, [`<b onmouseover="window.__xss='key'">k</b>`]: 'v', long: `${'A'.repeat(400)}<img src=z onerror="window.__xss='long'">` });
    const { ctx, page, errors } = await signIn(ops.alice!.token);
    try {
      const card = page.locator(`article[data-approval-id="${id}"]`);
      await card.waitFor(WAIT);
      await card.locator('details.fold summary').first().click();
      await card.locator('details.raw summary').click();
      await card.hover();
      assert.equal(await page.evaluate(() => (window as any).__xss), undefined, 'no injected script ran');
      assert.equal(await card.locator('img, svg, script, b').count(), 0, 'no injected element exists');
      const text = (await card.textContent())!;
      assert.ok(text.includes('<img src=x onerror='), 'the intent shows as text');
      assert.ok(text.includes('<svg onload='), 'the argument shows as text');
      assert.ok(text.includes('A'.repeat(400)), 'a long value is folded, never cut');
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
  });

  it('roles: an auditor sees the inbox but cannot approve, in the page or by request', async () => {
    const { agent } = await newTask();
    const id = await askToPay(agent, { amount: 7, to: 'acme' });
    const { ctx, page } = await signIn(ops.audrey!.token);
    try {
      const card = page.locator(`article[data-approval-id="${id}"]`);
      await card.waitFor(WAIT);
      await page.waitForSelector('#read-only-note', WAIT);
      assert.equal(await card.locator('button.approve').count(), 0, 'no approve button for an auditor');
      // the server decides, not the page: the same request an approver's page makes is refused
      const { cookie, csrf } = await sessionOf(ctx, page);
      const r = await fetch(`${serve.url}/console/api/v1/approvals/${id}/approve`, { method: 'POST', headers: { cookie, origin: serve.url, 'x-writ-csrf': csrf, 'content-type': 'application/json' }, body: '{}' });
      assert.equal(r.status, 403);
      assert.equal(((await r.json()) as any).error.code, 'insufficient_role');
      assert.equal((await admin.call('GET', `/v1/approvals/${id}`)).body.status, 'pending');
    } finally {
      await ctx.close();
    }
  });
});
