import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { UnauthorizedError } from '../src/core/errors.js';
import { setup } from './helpers/harness.js';

/**
 * The verified task token is cached by its exact text until its `exp` (src/service/tokens.ts
 * `authenticateTask`): the signature is checked once per token, the task and agent on every
 * request. What the cache must never do: accept a token that differs by one byte, outlive
 * the token's expiry, or let a revoked task's token through.
 */
describe('task token cache: negative cases', () => {
  const clock = new ManualClock();
  let env: Awaited<ReturnType<typeof setup>>;
  let taskId: string;
  let token: string;
  before(async () => {
    env = await setup('sqlite', { clock, config: { taskTokenTtlSeconds: 60 } });
    taskId = (await env.createTask({ ttl_seconds: 600 })).id;
    token = await env.taskToken(taskId);
    // verified and cached
    assert.equal((await env.writ.tokens.authenticateTask(token)).task.id, taskId);
  });
  after(async () => env?.teardown());

  const refused = async (t: string, code: string) =>
    assert.rejects(env.writ.tokens.authenticateTask(t), (err: unknown) => err instanceof UnauthorizedError && err.code === code, code);

  it('a cached token with one byte changed (signature, payload or header) is refused', async () => {
    const [h, p, s] = token.split('.') as [string, string, string];
    const flip = (part: string, i: number) => part.slice(0, i) + (part[i] === 'A' ? 'B' : 'A') + part.slice(i + 1);
    await refused(`${h}.${p}.${flip(s, 10)}`, 'invalid_token');
    await refused(`${h}.${flip(p, 12)}.${s}`, 'invalid_token');
    await refused(`${flip(h, 5)}.${p}.${s}`, 'invalid_token');
    // the original still works: the failures cached nothing
    assert.equal((await env.writ.tokens.authenticateTask(token)).task.id, taskId);
  });

  it('a cached token of a revoked task is refused at its next use', async () => {
    const t2 = (await env.createTask({ ttl_seconds: 600 })).id;
    const tok = await env.taskToken(t2);
    assert.equal((await env.writ.tokens.authenticateTask(tok)).task.id, t2);
    const r = await env.admin.call('POST', `/v1/tasks/${t2}/revoke`, { reason: 'test' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await refused(tok, 'task_not_active');
  });

  it('a cached token is refused once it expires, though its task is still active', async () => {
    clock.advance(70_000); // past `exp` (60 s) and the 5 s leeway
    await refused(token, 'token_expired');
    // the task itself is still active
    assert.equal((await env.store.getTask(taskId))?.status, 'active');
  });
});
