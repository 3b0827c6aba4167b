import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { sha256Hex } from '../src/core/digest.js';
import { Api, backends, BOOT_TOKEN, setup } from './helpers/harness.js';
import { writ as cli } from './helpers/cli.js';

const DAY = 86_400_000;

for (const { backend, skip } of backends()) {
  describe(`operator lifecycle: list, disable, rotate, expiry (${backend})`, { skip }, () => {
    const clock = new ManualClock(Date.now());
    let env: Awaited<ReturnType<typeof setup>>;
    let adminId: string;
    before(async () => {
      clock.set(Date.now());
      env = await setup(backend, { clock });
      adminId = (await env.store.findOperatorByTokenHash(sha256Hex(BOOT_TOKEN)))!.id;
    });
    after(async () => env?.teardown());

    const create = async (name: string, roles: string[]) => {
      const r = await env.admin.call('POST', '/v1/operators', { name, roles });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body as { id: string; token: string; expires_at: string };
    };
    const renewAdmin = async () => {
      const r = await env.admin.call('POST', `/v1/operators/${adminId}/rotate`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      env.admin.token = r.body.token;
    };
    const auditOf = async (type: string, id: string) =>
      (await env.store.listAudit({ type, limit: 1000 })).filter((e) => e.data.operator_id === id);

    it('a new operator token expires after 90 days by default; the list shows it, never a token or hash', async () => {
      const op = await create('alice', ['approver']);
      assert.equal(Date.parse(op.expires_at), clock.now() + 90 * DAY);
      const list = await env.admin.call('GET', '/v1/operators');
      assert.equal(list.status, 200);
      const row = list.body.operators.find((o: any) => o.id === op.id);
      assert.deepEqual(row, { id: op.id, name: 'alice', roles: ['approver'], status: 'active', created_at: new Date(clock.now()).toISOString(), expires_at: op.expires_at, rotated_at: null });
      const boot = list.body.operators.find((o: any) => o.id === adminId);
      assert.equal(boot.status, 'active');
      assert.equal(Date.parse(boot.expires_at), Date.parse(boot.created_at) + 90 * DAY, 'the bootstrap admin expires too');
      const text = JSON.stringify(list.body);
      assert.equal(text.includes(op.token), false);
      assert.equal(text.includes(sha256Hex(op.token)), false);
      assert.equal(text.includes('token_hash') || text.includes('tokenHash'), false);
      assert.equal((await auditOf('operator.created', op.id))[0]!.data.expires_at, Date.parse(op.expires_at));
    });

    it('an auditor may list; approvers and requesters may not, nor may anyone else disable or rotate', async () => {
      const auditor = await create('aud', ['auditor']);
      const approver = await create('appr', ['approver']);
      const requester = await create('req', ['requester']);
      assert.equal((await new Api(env.url, auditor.token).call('GET', '/v1/operators')).status, 200);
      for (const who of [approver, requester]) {
        assert.equal((await new Api(env.url, who.token).call('GET', '/v1/operators')).body.error.code, 'insufficient_role');
      }
      for (const who of [auditor, approver, requester]) {
        const api = new Api(env.url, who.token);
        // not even one's own token: a stolen token cannot extend its own life
        for (const path of [`/v1/operators/${who.id}/rotate`, `/v1/operators/${who.id}/disable`, `/v1/operators/${adminId}/disable`]) {
          const r = await api.call('POST', path);
          assert.equal(r.status, 403, path);
          assert.equal(r.body.error.code, 'insufficient_role');
        }
      }
      assert.equal((await env.admin.call('GET', '/v1/operators', undefined, { token: null })).status, 401);
    });

    it('rotate: a new token, shown once, with a fresh expiry; the old token is refused at once; audited', async () => {
      const op = await create('bob', ['requester']);
      clock.advance(5 * DAY);
      const r = await env.admin.call('POST', `/v1/operators/${op.id}/rotate`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.id, op.id);
      assert.notEqual(r.body.token, op.token);
      assert.equal(Date.parse(r.body.expires_at), clock.now() + 90 * DAY);
      const old = await new Api(env.url, op.token).call('GET', '/v1/tasks');
      assert.equal(old.status, 401);
      assert.equal(old.body.error.code, 'invalid_token');
      assert.equal((await new Api(env.url, r.body.token).call('GET', '/v1/tasks')).status, 200);
      const row = (await env.admin.call('GET', '/v1/operators')).body.operators.find((o: any) => o.id === op.id);
      assert.equal(row.rotated_at, new Date(clock.now()).toISOString());
      const audited = await auditOf('operator.token_rotated', op.id);
      assert.equal(audited.length, 1);
      assert.equal(audited[0]!.actor, `operator:${adminId}`);
      assert.equal(JSON.stringify(audited[0]).includes(r.body.token), false, 'the audit log holds no token');
      // rotating twice: the first new token is refused too
      const again = await env.admin.call('POST', `/v1/operators/${op.id}/rotate`, {});
      assert.equal(again.status, 200);
      assert.equal((await new Api(env.url, r.body.token).call('GET', '/v1/tasks')).status, 401);
    });

    it('an expired operator token is refused (401 token_expired) until an admin rotates it', async () => {
      const op = await create('carol', ['requester']);
      const api = new Api(env.url, op.token);
      assert.equal((await api.call('GET', '/v1/tasks')).status, 200);
      // keep the bootstrap admin working past carol's expiry: it rotates its own token a day later
      clock.advance(DAY);
      await renewAdmin();
      clock.advance(89 * DAY - 1000);
      assert.equal((await api.call('GET', '/v1/tasks')).status, 200, 'a second before its expiry it works');
      clock.advance(1000);
      const expired = await api.call('GET', '/v1/tasks');
      assert.equal(expired.status, 401);
      assert.equal(expired.body.error.code, 'token_expired');
      const listed = (await env.admin.call('GET', '/v1/operators')).body.operators.find((o: any) => o.id === op.id);
      assert.equal(listed.status, 'expired');
      const r = await env.admin.call('POST', `/v1/operators/${op.id}/rotate`);
      assert.equal(r.status, 200);
      assert.equal((await new Api(env.url, r.body.token).call('GET', '/v1/tasks')).status, 200);
      assert.equal((await api.call('GET', '/v1/tasks')).body.error.code, 'invalid_token', 'the expired token stays refused');
    });

    it('disable: its token is refused at once (401 operator_disabled), not rotated back, audited; twice and unknown ids are errors', async () => {
      const op = await create('dave', ['admin']);
      const api = new Api(env.url, op.token);
      assert.equal((await api.call('GET', '/v1/operators')).status, 200);
      const r = await env.admin.call('POST', `/v1/operators/${op.id}/disable`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.status, 'disabled');
      const refused = await api.call('GET', '/v1/operators');
      assert.equal(refused.status, 401);
      assert.equal(refused.body.error.code, 'operator_disabled');
      assert.equal((await api.call('POST', `/v1/operators/${adminId}/disable`)).status, 401, 'a disabled admin disables no one');
      assert.equal((await auditOf('operator.disabled', op.id)).length, 1);
      const twice = await env.admin.call('POST', `/v1/operators/${op.id}/disable`);
      assert.equal(twice.status, 409);
      assert.equal(twice.body.error.code, 'operator_disabled');
      const rotate = await env.admin.call('POST', `/v1/operators/${op.id}/rotate`);
      assert.equal(rotate.status, 409);
      assert.equal(rotate.body.error.code, 'operator_disabled');
      assert.equal((await auditOf('operator.disabled', op.id)).length, 1, 'nothing more audited');
      for (const id of ['op_missing', 'op_..%2F..', encodeURIComponent('op_x/../y')]) {
        for (const action of ['disable', 'rotate']) {
          const nf = await env.admin.call('POST', `/v1/operators/${id}/${action}`);
          assert.equal(nf.status, 404, `${action} ${id}`);
          assert.equal(nf.body.error.code, 'operator_not_found');
        }
      }
    });

    it('bad bodies: unknown fields, a body that is not JSON, the wrong content type', async () => {
      const op = await create('erin', ['approver']);
      for (const action of ['disable', 'rotate']) {
        const path = `/v1/operators/${op.id}/${action}`;
        assert.equal((await env.admin.call('POST', path, { ttl_seconds: 10 })).body.error.code, 'invalid_request');
        assert.equal((await env.admin.call('POST', path, [])).status, 400);
        assert.equal((await env.admin.call('POST', path, undefined, { raw: '{' })).body.error.code, 'invalid_json');
        assert.equal((await env.admin.call('POST', path, undefined, { raw: 'x=1', contentType: 'application/x-www-form-urlencoded' })).status, 415);
      }
      const still = (await env.admin.call('GET', '/v1/operators')).body.operators.find((o: any) => o.id === op.id);
      assert.equal(still.status, 'active');
      assert.equal(still.rotated_at, null, 'nothing happened');
    });

    it('the last enabled admin with an unexpired token cannot be disabled (409 last_admin); an expired admin does not count', async () => {
      await renewAdmin();
      for (const o of (await env.admin.call('GET', '/v1/operators')).body.operators) {
        if (o.id !== adminId && o.roles.includes('admin') && o.status !== 'disabled') {
          assert.equal((await env.admin.call('POST', `/v1/operators/${o.id}/disable`)).status, 200);
        }
      }
      const self = await env.admin.call('POST', `/v1/operators/${adminId}/disable`);
      assert.equal(self.status, 409);
      assert.equal(self.body.error.code, 'last_admin');
      assert.equal((await env.admin.call('GET', '/v1/tasks')).status, 200, 'and it still works');

      // a second admin whose token expires a day before the bootstrap admin's
      const second = await create('frank', ['admin', 'auditor']);
      clock.advance(DAY);
      await renewAdmin();
      clock.advance(90 * DAY - DAY + 1);
      assert.equal((await new Api(env.url, second.token).call('GET', '/v1/tasks')).body.error.code, 'token_expired');
      const stillLast = await env.admin.call('POST', `/v1/operators/${adminId}/disable`);
      assert.equal(stillLast.status, 409, 'frank has expired: he is no remaining admin');
      assert.equal(stillLast.body.error.code, 'last_admin');

      // rotated, frank is an admin again: now the bootstrap admin can go
      const frank = await env.admin.call('POST', `/v1/operators/${second.id}/rotate`);
      const ok = await env.admin.call('POST', `/v1/operators/${adminId}/disable`);
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal((await env.admin.call('GET', '/v1/tasks')).body.error.code, 'operator_disabled');
      env.admin.token = frank.body.token;
      const last = await env.admin.call('POST', `/v1/operators/${second.id}/disable`);
      assert.equal(last.body.error.code, 'last_admin');
    });

    it('writ operator list|rotate|disable (CLI, against this server)', async () => {
      const base = { WRIT_URL: env.url, WRIT_TOKEN: env.admin.token };
      const victim = await create('gina', ['approver']);
      const listed = await cli(['operator', 'list'], base);
      assert.equal(listed.code, 0, listed.stderr);
      const row = listed.json.operators.find((o: any) => o.id === victim.id);
      assert.equal(row.status, 'active');
      assert.ok(row.expires_at);
      const rotated = await cli(['operator', 'rotate', victim.id], base);
      assert.equal(rotated.code, 0, rotated.stderr);
      assert.match(rotated.json.token, /^wop_/);
      assert.equal((await new Api(env.url, victim.token).call('GET', '/v1/tool-labels')).status, 401);
      const disabled = await cli(['operator', 'disable', victim.id], base);
      assert.equal(disabled.code, 0, disabled.stderr);
      assert.equal(disabled.json.status, 'disabled');
      assert.equal((await new Api(env.url, rotated.json.token).call('GET', '/v1/tool-labels')).body.error.code, 'operator_disabled');
      const again = await cli(['operator', 'disable', victim.id], base);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /operator_disabled/);
      const missing = await cli(['operator', 'rotate'], base);
      assert.equal(missing.code, 2, 'usage error without an id');
    });
  });
}
