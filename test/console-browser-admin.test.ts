/**
 * The console's audit, break-glass, policy, agent and operator pages in a real browser
 * (Debian's chromium through playwright-core), against `writ serve` in a child process;
 * and every page at 360 px. One browser for the file. Skipped, with the reason, where
 * chromium is not installed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { buildConsole } from '../scripts/build-console.mjs';
import { Api, makeAgentKeys, makeAssertion } from './helpers/harness.js';
import { browserSkip, launchBrowser } from './helpers/browser.js';
import { startServe, type Spawned } from './helpers/serve-process.js';

const ADMIN = `wop_${'Zz9Yy8Xx7W'.repeat(4)}q1`;
const WAIT = { timeout: 60_000 };

describe('operator console in a browser: audit, break-glass, policies, agents, operators', { skip: browserSkip() }, () => {
  let dir: string;
  let serve: Spawned & { url: string };
  let browser: Browser;
  let admin: Api;
  let decisionId: string;
  let auditor: { id: string; token: string };

  before(async () => {
    await buildConsole();
    dir = mkdtempSync(join(tmpdir(), 'writ-console-admin-'));
    serve = await startServe(['--data-dir', join(dir, 'store')], { ...process.env, WRIT_BOOTSTRAP_TOKEN: ADMIN });
    admin = new Api(serve.url, ADMIN);
    browser = await launchBrowser();
    const keys = await makeAgentKeys('spiffe://acme.test/agent/ci');
    assert.equal((await admin.call('POST', '/v1/agents', { id: keys.id, name: 'ci', jwks: { keys: [keys.publicJwk] } })).status, 201);
    const t = await admin.call('POST', '/v1/tasks', { agent_id: keys.id, intent: 'open the weekly PR', scope: { tools: ['github.*'], resources: [], destinations: [] }, ttl_seconds: 600, max_actions: 5 });
    const tok = await admin.form('/oauth/token', {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await makeAssertion(keys, serve.url),
      task_id: t.body.id,
    });
    const agent = new Api(serve.url, tok.body.access_token);
    const allowed = await agent.call('POST', '/v1/authorize', { tool: 'github.create_pull_request', arguments: { title: 'deps' }, audience: 'https://tools.example/github' });
    assert.equal(allowed.body.decision, 'allow', JSON.stringify(allowed.body));
    decisionId = allowed.body.decision_id;
    assert.equal((await agent.call('POST', '/v1/authorize', { tool: 'shell.exec', arguments: {}, audience: 'https://tools.example/shell' })).body.decision, 'deny');
    const a = await admin.call('POST', '/v1/operators', { name: 'audrey', roles: ['auditor'] });
    auditor = { id: a.body.id, token: a.body.token };
  });
  after(async () => {
    await browser?.close();
    await serve?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const signIn = async (token: string, hash: string, width = 1280): Promise<{ ctx: BrowserContext; page: Page; errors: string[] }> => {
    const ctx = await browser.newContext({ viewport: { width, height: 900 }, acceptDownloads: true });
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('dialog', (d) => void d.accept());
    await page.goto(`${serve.url}/console${hash}`);
    await page.fill('#token', token);
    await page.click('button[type=submit]');
    await page.waitForSelector('header.top', WAIT);
    return { ctx, page, errors };
  };

  it('audit: search by tool and decision, verify the chain, export, and a trace in the order `writ audit trace` prints', async () => {
    const { ctx, page, errors } = await signIn(auditor.token, '#/audit');
    try {
      await page.waitForSelector('#audit-list tbody tr', WAIT);
      await page.fill('#audit-search input[placeholder="payments.*"]', 'shell.*');
      await page.selectOption('#audit-search select', 'deny');
      await page.click('#audit-search button[type=submit]');
      await page.waitForFunction(() => document.querySelectorAll('#audit-list tbody tr').length === 1, undefined, WAIT);
      assert.match((await page.textContent('#audit-list tbody'))!, /shell\.exec/);

      await page.click('#verify-chain');
      await page.waitForSelector('#chain-result', WAIT);
      assert.match((await page.textContent('#chain-result'))!, /ok/);

      const download = page.waitForEvent('download', WAIT);
      await page.click('#export');
      const file = await (await download).path();
      const lines = readFileSync(file, 'utf8').trim().split('\n');
      assert.ok(lines.length > 5);
      for (const l of lines) JSON.parse(l);

      await page.goto(`${serve.url}/console#/audit/trace/${decisionId}`);
      await page.waitForSelector('#trace-steps li', WAIT);
      const shown = await page.$$eval('#trace-steps li .at', (els) => els.map((e) => /#(\d+)/.exec(e.textContent ?? '')![1]));
      const cli = await fetch(`${serve.url}/v1/audit/trace/${decisionId}?format=text`, { headers: { authorization: `Bearer ${auditor.token}` } }).then((r) => r.text());
      const printed = [...cli.matchAll(/^#(\d+) /gm)].map((m) => m[1]);
      assert.ok(printed.length >= 3);
      assert.deepEqual(shown, printed, 'the same steps in the same order as the CLI');
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
  });

  it('break-glass: an admin starts it with a justification, every page shows the banner, ends it, and it is reviewed from the queue', async () => {
    const { ctx, page } = await signIn(ADMIN, '#/break-glass');
    const watcher = await signIn(auditor.token, '#/approvals');
    try {
      await page.click('details.form-box summary');
      await page.fill('#break-glass-start input[required]:not(#bg-tools):not(#bg-minutes)', 'spiffe://acme.test/agent/ci');
      await page.fill('#bg-why', 'short');
      await page.fill('#bg-tools', 'github.rerun_workflow');
      // a justification under 20 characters is not even sent (and the server refuses it too, test/console-api)
      assert.equal(await page.$eval('#bg-why', (el) => (el as HTMLTextAreaElement).validity.valid), false);
      await page.fill('#bg-why', 'The release pipeline is down; re-run the job by hand (INC-1).');
      await page.click('#break-glass-start button[type=submit]');
      await page.waitForSelector('article[data-break-glass-id]', WAIT);
      // another operator's page, open all along, shows the banner without a reload
      await watcher.page.waitForSelector('#break-glass-banner', WAIT);
      await page.click('article[data-break-glass-id] button.end');
      await watcher.page.waitForSelector('#break-glass-banner', { state: 'detached', ...WAIT });

      // the auditor sees the review queue, without the means to review
      await watcher.page.goto(`${serve.url}/console#/break-glass`);
      await watcher.page.selectOption('select', 'unreviewed');
      await watcher.page.locator('article[data-break-glass-id]').waitFor(WAIT);
      assert.equal(await watcher.page.locator('article[data-break-glass-id] textarea').count(), 0);
      await page.selectOption('select', 'unreviewed');
      const card = page.locator('article[data-break-glass-id]');
      await card.waitFor(WAIT);
      await card.locator('textarea').fill('justified: INC-1 postmortem');
      await card.locator('button', { hasText: 'Record review' }).click();
      await card.waitFor({ state: 'detached', ...WAIT });
      const list = await admin.call('GET', '/v1/break-glass?state=ended');
      assert.equal(list.body.break_glass[0].review_notes, 'justified: INC-1 postmortem');
    } finally {
      await ctx.close();
      await watcher.ctx.close();
    }
  });

  it('policies: an edit is validated with its diagnostic inline, replaced with If-Match, and a stale edit is refused', async () => {
    const { ctx, page } = await signIn(ADMIN, '#/policies');
    try {
      await page.waitForSelector('#policy-text', WAIT);
      const good = '@id("everything")\npermit (principal, action, resource);\n';
      await page.fill('#policy-text', '@id("broken")\npermit (principal, action, resource)\nwhen { context.nope };\n');
      await page.click('#policy-validate');
      await page.waitForSelector('#policy-diagnostics', WAIT);
      assert.match((await page.textContent('#policy-diagnostics'))!, /line 3/);
      assert.equal(await page.isDisabled('#policy-replace'), true, 'an invalid edit cannot be sent');
      await page.fill('#policy-text', good);
      await page.click('#policy-validate');
      await page.waitForSelector('#policy-check.ok', WAIT);
      const before = (await admin.call('GET', '/v1/policies')).body.version;
      await page.click('#policy-replace');
      await page.waitForSelector('#policy-saved', WAIT);
      const now = (await admin.call('GET', '/v1/policies')).body;
      assert.notEqual(now.version, before);
      assert.equal(now.policies, good);

      // someone else changes it meanwhile: this page's edit names the old version
      await page.fill('#policy-text', `${good}// mine\n`);
      assert.equal((await admin.call('PUT', '/v1/policies', { policies: `${good}// theirs\n` })).status, 200);
      await page.click('#policy-replace');
      await page.waitForSelector('.error', WAIT);
      assert.match((await page.textContent('.error'))!, /policy_version_mismatch/);
      assert.match((await admin.call('GET', '/v1/policies')).body.policies, /theirs/);
    } finally {
      await ctx.close();
    }
  });

  it('agents and operators: register and disable an agent, disable an operator whose open console is then signed out', async () => {
    const victim = await admin.call('POST', '/v1/operators', { name: 'victor', roles: ['approver'] });
    const theirs = await signIn(victim.body.token, '#/approvals');
    const { ctx, page } = await signIn(ADMIN, '#/agents');
    try {
      const keys = await makeAgentKeys('spiffe://acme.test/agent/new');
      await page.click('details.form-box summary');
      await page.fill('#ag-id', keys.id);
      await page.fill('#ag-name', '<b>new</b>');
      await page.fill('#ag-jwks', JSON.stringify({ keys: [keys.publicJwk] }));
      await page.click('details.form-box button[type=submit]');
      const row = page.locator('#agent-list tr', { hasText: keys.id });
      await row.waitFor(WAIT);
      assert.match((await row.textContent())!, /<b>new<\/b>/, 'the name shows as text');
      await row.locator('button.danger').click();
      await page.locator('#agent-list tr', { hasText: keys.id }).locator('.badge', { hasText: 'disabled' }).waitFor(WAIT);
      assert.equal((await admin.call('GET', `/v1/agents/${encodeURIComponent(keys.id)}`)).body.status, 'disabled');

      await page.goto(`${serve.url}/console#/operators`);
      const op = page.locator('#operator-list tr', { hasText: victim.body.id });
      await op.waitFor(WAIT);
      await op.locator('button.danger').click();
      await op.locator('.badge', { hasText: 'disabled' }).waitFor(WAIT);
      // the operator's open console learns it from the event stream
      await theirs.page.waitForSelector('#token', WAIT);
    } finally {
      await ctx.close();
      await theirs.ctx.close();
    }
  });

  it('every page works at 360 px: nothing wider than the screen', async () => {
    const { ctx, page, errors } = await signIn(ADMIN, '#/approvals', 360);
    try {
      for (const hash of ['#/approvals', '#/tasks', '#/audit', `#/audit/trace/${decisionId}`, '#/break-glass', '#/agents', '#/policies', '#/operators']) {
        await page.goto(`${serve.url}/console${hash}`);
        await page.waitForSelector('main section h1', WAIT);
        await page.waitForLoadState('networkidle').catch(() => undefined);
        const width = await page.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(width <= 360, `${hash} is ${width} px wide`);
      }
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
  });
});
