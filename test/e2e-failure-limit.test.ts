import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Api, BOOT_TOKEN, makeAgentKeys, makeAssertion, openTestStore, startInstance, type Instance, type OpenedStore } from './helpers/harness.js';

describe('failed requests are bounded per client address: no unbounded audit growth from anonymous callers', () => {
  let opened: OpenedStore;
  let inst: Instance;
  let admin: Api;
  before(async () => {
    opened = await openTestStore('sqlite');
    inst = await startInstance(opened.store, { failureLimit: { max: 20, windowMs: 60_000 } });
    await inst.writ.bootstrapAdmin(BOOT_TOKEN);
    admin = new Api(inst.url, BOOT_TOKEN);
  });
  after(async () => {
    await inst.close();
    await inst.writ.close().catch(() => undefined);
    await opened.cleanup();
  });

  it('past the limit the address gets 429 and one audit entry says so; the refused requests are not each audited', async () => {
    const stranger = await makeAgentKeys('spiffe://acme.test/agent/stranger');
    const before = (await opened.store.listAudit({ limit: 10_000 })).length;
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) {
      const r = await admin.form('/oauth/token', {
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await makeAssertion(stranger, inst.url),
        task_id: 'task_x',
      });
      statuses.push(r.status);
    }
    assert.equal(statuses.filter((s) => s === 401).length, 20, 'the first 20 failures are answered');
    assert.equal(statuses.filter((s) => s === 429).length, 40, 'the rest are refused unprocessed');
    const entries = (await opened.store.listAudit({ limit: 10_000 })).slice(before);
    assert.equal(entries.filter((e) => e.type === 'token.refused').length, 20);
    assert.equal(entries.filter((e) => e.type === 'security.rate_limited').length, 1);
    const limited = await fetch(`${inst.url}/healthz`);
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get('retry-after'), '10');
    assert.equal(((await limited.json()) as any).error.code, 'rate_limited');
  });
});
