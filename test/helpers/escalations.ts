import assert from 'node:assert/strict';
import type { ManualClock } from '../../src/core/clock.js';
import type { WritConfig } from '../../src/service/config.js';
import { Api, makeAgentKeys, makeAssertion, setup, startInstance, type AgentKeys, type Backend, type Instance } from './harness.js';

/** Helpers shared by the approval, break-glass and presence end-to-end suites. */

export type Env = Awaited<ReturnType<typeof setup>>;

/** Sets the active policy (admin); fails the test when it does not validate. */
export async function setPolicy(env: Env, text: string): Promise<void> {
  const r = await env.admin.call('PUT', '/v1/policies', { policies: text });
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

/** A new operator with these roles; answers an Api carrying its token, and its id. */
export async function makeOperator(env: Env, name: string, roles: string[]): Promise<Api & { id: string }> {
  const r = await env.admin.call('POST', '/v1/operators', { name, roles });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return Object.assign(new Api(env.url, r.body.token as string), { id: r.body.id as string });
}

/** A task token whose client assertion is dated by the server's (possibly manual) clock. */
export async function taskTokenAt(env: Env, taskId: string, clock?: ManualClock, agent: AgentKeys = env.agent): Promise<string> {
  const assertion = await makeAssertion(agent, env.url, clock ? { iat: Math.floor(clock.now() / 1000) } : {});
  const r = await env.admin.form('/oauth/token', {
    grant_type: 'client_credentials',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
    task_id: taskId,
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.access_token as string;
}

/** An agent's view of the API with its task token. */
export async function agentFor(env: Env, taskId: string, clock?: ManualClock, agent?: AgentKeys): Promise<Api> {
  return new Api(env.url, await taskTokenAt(env, taskId, clock, agent));
}

/** Registers another agent (for delegation). */
export async function registerAgent(env: Env, id: string): Promise<AgentKeys> {
  const keys = await makeAgentKeys(id);
  const r = await env.admin.call('POST', '/v1/agents', { id, name: id, jwks: { keys: [keys.publicJwk] } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return keys;
}

/** A second Writ instance on the same store (another process's view), same issuer. */
export async function secondInstance(env: Env, clock?: ManualClock, config?: Partial<WritConfig>): Promise<Instance & { api: (token?: string) => Api; stop: () => Promise<void> }> {
  const store = await env.opened.another(clock);
  const inst = await startInstance(store, { clock, issuer: env.url, config });
  return {
    ...inst,
    api: (token) => new Api(inst.url, token),
    stop: async () => {
      await inst.close();
      await inst.writ.close().catch(() => undefined);
    },
  };
}

export async function auditTypes(env: Env, query: string): Promise<{ type: string; data: Record<string, any>; actor: string }[]> {
  const r = await env.admin.call('GET', `/v1/audit?${query}&limit=1000`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.entries;
}

export type { Backend };
