/**
 * The console's server side without a browser (README "Console"): the session cookie and
 * its flags, session end (idle, sign-out, a disabled operator), the `/console/api/v1`
 * bridge with its CSRF and Origin checks, the audit search and the policy check, and the
 * event stream. Both stores: the search reads the audit log.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { backends, setup } from './helpers/harness.js';
import { makeOperator, taskTokenAt, type Env } from './helpers/escalations.js';

for (const { backend, skip } of backends()) {
  describe(`console API (${backend})`, { skip }, () => {
    let env: Env;
    let clock: ManualClock;

    before(async () => {
      clock = new ManualClock(Date.now());
      // the loopback peer is a trusted proxy here, so X-Forwarded-Proto is read
      env = await setup(backend, { clock, http: { trustedProxies: ['127.0.0.1'] } });
    });
    after(async () => env?.teardown());

    const send = async (method: string, path: string, opts: { cookie?: string; csrf?: string; origin?: string | null; body?: unknown; headers?: Record<string, string> } = {}) => {
      const headers: Record<string, string> = { ...opts.headers };
      if (opts.cookie) headers.cookie = opts.cookie;
      if (opts.csrf !== undefined) headers['x-writ-csrf'] = opts.csrf;
      if (opts.origin !== null) headers.origin = opts.origin ?? env.url;
      if (opts.body !== undefined) headers['content-type'] = 'application/json';
      const r = await fetch(env.url + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
      const text = await r.text();
      let body: any = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON
      }
      return { status: r.status, body, headers: r.headers };
    };
    const signIn = async (token: string, headers: Record<string, string> = {}) => {
      const r = await send('POST', '/console/api/session', { body: { token }, headers });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const setCookie = r.headers.get('set-cookie')!;
      return { cookie: setCookie.split(';')[0]!, csrf: r.body.csrf as string, setCookie, operator: r.body.operator };
    };

    it('sign-in: a session cookie with the right flags, Secure only over https from a trusted proxy; bad input and bad tokens refused', async () => {
      const plain = await signIn(env.admin.token!);
      assert.match(plain.setCookie, /^writ_console=[\w-]{43}; Path=\/console; HttpOnly; SameSite=Strict; Max-Age=28800$/);
      const tls = await signIn(env.admin.token!, { 'x-forwarded-proto': 'https' });
      assert.match(tls.setCookie, /; Secure$/);
      assert.notEqual(tls.cookie, plain.cookie, 'each sign-in is a new session');
      assert.equal(plain.operator.roles[0], 'admin');
      assert.ok(!JSON.stringify(plain).includes(env.admin.token!), 'the token is never sent back');

      for (const [body, code, status] of [
        [{ token: 'wop_wrong-token-0000000000000000000000000' }, 'invalid_token', 401],
        [{ token: '' }, 'invalid_request', 400],
        [{}, 'invalid_request', 400],
        [{ token: env.admin.token, extra: 1 }, 'invalid_request', 400],
        [{ token: 'x'.repeat(5000) }, 'invalid_request', 400],
      ] as const) {
        const r = await send('POST', '/console/api/session', { body });
        assert.equal(r.status, status, JSON.stringify(r.body));
        assert.equal(r.body.error.code, code);
        assert.equal(r.headers.get('set-cookie'), null);
      }
      const noOrigin = await send('POST', '/console/api/session', { body: { token: env.admin.token }, origin: null });
      assert.equal(noOrigin.body.error.code, 'origin_not_allowed');
      const sameOrigin = await send('POST', '/console/api/session', { body: { token: env.admin.token }, origin: null, headers: { 'sec-fetch-site': 'same-origin' } });
      assert.equal(sameOrigin.status, 201, 'a browser that marks the request same-origin passes without Origin');
    });

    it('the bridge: /console/api/v1 is /v1 as the session operator; no session, another origin or no CSRF token are refused', async () => {
      const s = await signIn(env.admin.token!);
      const list = await send('GET', '/console/api/v1/agents', { cookie: s.cookie });
      assert.equal(list.status, 200);
      assert.equal(list.body.agents[0].id, env.agent.id);
      assert.equal((await send('GET', '/console/api/v1/agents')).status, 401);
      assert.equal((await send('GET', '/console/api/v1/agents', { cookie: 'writ_console=not-a-session' })).body.error.code, 'invalid_token');
      // a bearer token of the browser's own is never what the bridge uses
      const viaBearer = await send('GET', '/console/api/v1/agents', { headers: { authorization: `Bearer ${env.admin.token}` } });
      assert.equal(viaBearer.status, 401);

      const task = await env.createTask();
      const revoke = (o: Parameters<typeof send>[2]) => send('POST', `/console/api/v1/tasks/${task.id}/revoke`, { cookie: s.cookie, body: {}, ...o });
      assert.equal((await revoke({ csrf: s.csrf, origin: 'http://evil.example' })).body.error.code, 'origin_not_allowed');
      assert.equal((await revoke({ csrf: s.csrf, origin: 'null' })).body.error.code, 'origin_not_allowed');
      assert.equal((await revoke({ csrf: s.csrf, origin: env.url.replace('127.0.0.1', 'localhost') })).body.error.code, 'origin_not_allowed');
      assert.equal((await revoke({})).body.error.code, 'csrf_token_invalid');
      const other = await signIn(env.admin.token!);
      assert.equal((await revoke({ csrf: other.csrf })).body.error.code, 'csrf_token_invalid', "another session's token does not pass");
      assert.equal((await env.admin.call('GET', `/v1/tasks/${task.id}`)).body.status, 'active');
      const ok = await revoke({ csrf: s.csrf });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      // the API's own validation answers through the bridge
      const bad = await send('POST', '/console/api/v1/tasks', { cookie: s.cookie, csrf: s.csrf, body: { agent_id: env.agent.id } });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'invalid_request');
    });

    it('sessions end: at sign-out, after 30 idle minutes, and when the operator is disabled', async () => {
      const s = await signIn(env.admin.token!);
      const out = await send('DELETE', '/console/api/session', { cookie: s.cookie });
      assert.equal(out.body.error.code, 'csrf_token_invalid', 'signing out is a change too');
      const done = await send('DELETE', '/console/api/session', { cookie: s.cookie, csrf: s.csrf });
      assert.equal(done.status, 200);
      assert.match(done.headers.get('set-cookie')!, /Max-Age=0/);
      assert.equal((await send('GET', '/console/api/session', { cookie: s.cookie })).status, 401);

      const idle = await signIn(env.admin.token!);
      clock.advance(29 * 60_000);
      assert.equal((await send('GET', '/console/api/session', { cookie: idle.cookie })).status, 200, 'a request restarts the idle clock');
      clock.advance(29 * 60_000);
      assert.equal((await send('GET', '/console/api/session', { cookie: idle.cookie })).status, 200);
      clock.advance(31 * 60_000);
      assert.equal((await send('GET', '/console/api/session', { cookie: idle.cookie })).status, 401);

      const bob = await makeOperator(env, 'bob-console', ['approver']);
      const b = await signIn(bob.token!);
      assert.equal((await send('GET', '/console/api/v1/approvals', { cookie: b.cookie })).status, 200);
      assert.equal((await env.admin.call('POST', `/v1/operators/${bob.id}/disable`, {})).status, 200);
      const after = await send('GET', '/console/api/v1/approvals', { cookie: b.cookie });
      assert.equal(after.status, 401);
      assert.equal(after.body.error.code, 'operator_disabled');
    });

    it('audit search: by tool (name or prefix), decision, agent, task and time, paged; roles and bad input refused', async () => {
      const s = await signIn(env.admin.token!);
      const task = await env.createTask({ scope: { tools: ['github.*', 'billing.read'], resources: [], destinations: [] } });
      const tt = await taskTokenAt(env, task.id, clock);
      const ask = (tool: string) =>
        fetch(`${env.url}/v1/authorize`, { method: 'POST', headers: { authorization: `Bearer ${tt}`, 'content-type': 'application/json' }, body: JSON.stringify({ tool, arguments: {}, audience: 'https://tools.example' }) }).then((r) => r.json() as Promise<any>);
      const t0 = new Date(clock.now()).toISOString();
      assert.equal((await ask('github.create_issue')).decision, 'allow');
      clock.advance(60_000);
      const t1 = new Date(clock.now()).toISOString();
      assert.equal((await ask('github.get_issue')).decision, 'allow');
      assert.equal((await ask('billing.read')).decision, 'allow');
      assert.equal((await ask('shell.exec')).decision, 'deny');
      const search = (q: string) => send('GET', `/console/api/audit?${q}`, { cookie: s.cookie });

      const byTool = await search(`tool=github.create_issue&task_id=${task.id}`);
      assert.equal(byTool.status, 200, JSON.stringify(byTool.body));
      assert.deepEqual(byTool.body.entries.map((e: any) => e.data.tool), ['github.create_issue']);
      assert.deepEqual((await search(`tool=github.*&task_id=${task.id}`)).body.entries.map((e: any) => e.data.tool), ['github.create_issue', 'github.get_issue']);
      assert.deepEqual((await search(`decision=deny&task_id=${task.id}`)).body.entries.map((e: any) => e.data.tool), ['shell.exec']);
      assert.deepEqual((await search(`decision=allow&agent_id=${encodeURIComponent(env.agent.id)}&since=${encodeURIComponent(t1)}`)).body.entries.map((e: any) => e.data.tool), ['github.get_issue', 'billing.read']);
      const until = await search(`task_id=${task.id}&type=decision&since=${encodeURIComponent(t0)}&until=${encodeURIComponent(new Date(Date.parse(t1) - 1).toISOString())}`);
      assert.deepEqual(until.body.entries.map((e: any) => e.data.tool), ['github.create_issue']);
      // paging: one at a time, on from next_after
      const p1 = await search(`task_id=${task.id}&type=decision&limit=1`);
      assert.equal(p1.body.entries.length, 1);
      assert.ok(p1.body.next_after > 0);
      const p2 = await search(`task_id=${task.id}&type=decision&limit=1&after=${p1.body.next_after}`);
      assert.equal(p2.body.entries[0].data.tool, 'github.get_issue');
      const future = await search(`since=${encodeURIComponent(new Date(clock.now() + 3600_000).toISOString())}`);
      assert.deepEqual(future.body, { entries: [], next_after: null, scanned: 0 });

      for (const q of ['decision=maybe', 'since=yesterday', 'limit=0', 'limit=501', 'after=-1', 'tool=a*b', 'bogus=1', 'decision=deny&type=task.created', `since=${encodeURIComponent(t1)}&until=${encodeURIComponent(t0)}`]) {
        const r = await search(q);
        assert.equal(r.status, 400, `${q}: ${JSON.stringify(r.body)}`);
        assert.match(r.body.error.code, /^invalid_/);
      }
      const approver = await makeOperator(env, 'carol-console', ['approver']);
      const a = await signIn(approver.token!);
      const refused = await send('GET', '/console/api/audit', { cookie: a.cookie });
      assert.equal(refused.status, 403);
      assert.equal(refused.body.error.code, 'insufficient_role');
      assert.equal((await send('GET', '/console/api/audit')).status, 401);
    });

    it('policy check: diagnostics with line and column for a bad edit, ok for a good one, nothing stored', async () => {
      const s = await signIn(env.admin.token!);
      const before = (await env.admin.call('GET', '/v1/policies')).body.version;
      const good = await send('POST', '/console/api/policies/validate', { cookie: s.cookie, csrf: s.csrf, body: { policies: '@id("p")\npermit (principal, action, resource);' } });
      assert.equal(good.status, 200, JSON.stringify(good.body));
      assert.equal(good.body.ok, true);
      assert.deepEqual(good.body.ids, ['p']);
      const bad = await send('POST', '/console/api/policies/validate', { cookie: s.cookie, csrf: s.csrf, body: { policies: '@id("p")\npermit (principal, action, resource)\nwhen { context.nope };' } });
      assert.equal(bad.body.ok, false);
      assert.equal(bad.body.diagnostics[0].severity, 'error');
      assert.equal(bad.body.diagnostics[0].line, 3);
      assert.ok(bad.body.diagnostics[0].excerpt.includes('context.nope'));
      const unparsable = await send('POST', '/console/api/policies/validate', { cookie: s.cookie, csrf: s.csrf, body: { policies: 'permit (' } });
      assert.equal(unparsable.body.ok, false);
      assert.ok(unparsable.body.diagnostics.length > 0);
      assert.equal((await send('POST', '/console/api/policies/validate', { cookie: s.cookie, body: { policies: 'x' } })).body.error.code, 'csrf_token_invalid');
      assert.equal((await send('POST', '/console/api/policies/validate', { cookie: s.cookie, csrf: s.csrf, body: { policies: '' } })).status, 400);
      assert.equal((await env.admin.call('GET', '/v1/policies')).body.version, before, 'nothing was stored');
    });

    it('events: the stream reports a new pending approval and a verdict, and stops for a disabled operator', async () => {
      await env.admin.call('PUT', '/v1/policies', {
        policies: '@id("a")\npermit (principal, action == Writ::Action::"call", resource) unless { resource in Writ::ToolGroup::"payments" };\n@id("b")\npermit (principal, action == Writ::Action::"call", resource in Writ::ToolGroup::"payments") when { context.approval.granted };',
      });
      const watcher = await makeOperator(env, 'dave-console', ['approver']);
      const s = await signIn(watcher.token!);
      const events: { event: string; data: any }[] = [];
      let notify = () => undefined as void;
      const req = request(`${env.url}/console/api/events`, { headers: { cookie: s.cookie } });
      const closed = new Promise<void>((ok) => {
        req.on('response', (res) => {
          assert.equal(res.statusCode, 200);
          assert.match(String(res.headers['content-type']), /^text\/event-stream/);
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buf += chunk;
            let i;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              const event = /^event: (.*)$/m.exec(block)?.[1];
              const data = /^data: (.*)$/m.exec(block)?.[1];
              if (event) events.push({ event, data: data ? JSON.parse(data) : null });
              notify();
            }
          });
          res.on('end', ok);
          res.on('close', ok);
        });
      });
      req.on('error', () => undefined);
      req.end();
      const next = (pred: (e: { event: string; data: any }) => boolean) =>
        new Promise<{ event: string; data: any }>((ok, fail) => {
          const t = setTimeout(() => fail(new Error(`no such event; got ${JSON.stringify(events)}`)), 60_000);
          const look = () => {
            const e = events.find(pred);
            if (e) {
              clearTimeout(t);
              ok(e);
            }
          };
          notify = look;
          look();
        });
      try {
        await next((e) => e.event === 'change');
        const task = await env.createTask({ scope: { tools: ['payments.*'], resources: [], destinations: [] } });
        const tt = await taskTokenAt(env, task.id, clock);
        const asked = (await (await fetch(`${env.url}/v1/authorize`, { method: 'POST', headers: { authorization: `Bearer ${tt}`, 'content-type': 'application/json' }, body: JSON.stringify({ tool: 'payments.transfer', arguments: { amount: 1 }, audience: 'https://tools.example' }) })).json()) as any;
        assert.equal(asked.decision, 'approval_required');
        await next((e) => e.event === 'change' && e.data.approvals.some((a: string) => a.startsWith(`${asked.approval_id}:`)));
        assert.equal((await env.admin.call('POST', `/v1/approvals/${asked.approval_id}/deny`, {})).status, 200);
        await next((e) => e.event === 'change' && !e.data.approvals.some((a: string) => a.startsWith(`${asked.approval_id}:`)) && events.indexOf(e) > 1);
        await env.admin.call('POST', `/v1/operators/${watcher.id}/disable`, {});
        await next((e) => e.event === 'signed_out');
        await closed;
      } finally {
        req.destroy();
      }
    });
  });
}
