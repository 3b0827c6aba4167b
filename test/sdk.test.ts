import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createActionVerifier, consumeActionToken, argumentsDigest } from '@writ/sdk';
import { digestArguments } from '../src/core/digest.js';
import { ManualClock } from '../src/core/clock.js';
import { Api, setup } from './helpers/harness.js';

describe('sdk: tool-side verification of action tokens', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let agentApi: Api;
  before(async () => {
    env = await setup('sqlite');
    const task = await env.createTask();
    agentApi = new Api(env.url, await env.taskToken(task.id));
  });
  after(async () => env?.teardown());

  const allow = async (args: Record<string, unknown>, audience = 'https://tools.example/github', tool = 'github.create_issue') => {
    const r = await agentApi.call('POST', '/v1/authorize', { tool, arguments: args, audience });
    assert.equal(r.body.decision, 'allow');
    return r.body.action_token as string;
  };

  it('matches the server digest (RFC 8785 key order and number forms)', () => {
    const a = { b: [1, 2.5, 'x'], a: { z: true, y: null }, n: 1e21 };
    const b = { n: 1e21, a: { y: null, z: true }, b: [1, 2.5, 'x'] };
    assert.equal(argumentsDigest(a), digestArguments(b));
    assert.notEqual(argumentsDigest({ a: 1 }), argumentsDigest({ a: '1' }));
  });

  it('accepts the exact call with the JWKS from the URL, then consumes once', async () => {
    const verify = createActionVerifier({ issuer: env.url, audience: 'https://tools.example/github', jwks: `${env.url}/.well-known/jwks.json` });
    const args = { repo: 'acme/api', title: 't' };
    const token = await allow(args);
    const claims = await verify(token, { tool: 'github.create_issue', arguments: { title: 't', repo: 'acme/api' } });
    assert.equal(claims.tool, 'github.create_issue');
    const consumed = await consumeActionToken(env.url, token, 'https://tools.example/github');
    assert.equal(consumed.jti, claims.jti);
    await assert.rejects(consumeActionToken(env.url, token, 'https://tools.example/github'), (e: any) => e.code === 'token_already_used');
  });

  it('refuses other arguments, another tool, another audience, a task token and a tampered token', async () => {
    const jwks = await (await fetch(`${env.url}/.well-known/jwks.json`)).json();
    const verify = createActionVerifier({ issuer: env.url, audience: 'https://tools.example/github', jwks });
    const token = await allow({ amount: 10 });
    await assert.rejects(verify(token, { tool: 'github.create_issue', arguments: { amount: 1000 } }), { code: 'arguments_mismatch' });
    await assert.rejects(verify(token, { tool: 'github.delete_repo', arguments: { amount: 10 } }), { code: 'wrong_tool' });
    const other = createActionVerifier({ issuer: env.url, audience: 'https://tools.example/other', jwks });
    await assert.rejects(other(token, { tool: 'github.create_issue', arguments: { amount: 10 } }), { code: 'wrong_audience' });
    const wrongIss = createActionVerifier({ issuer: 'https://evil.example', audience: 'https://tools.example/github', jwks });
    await assert.rejects(wrongIss(token, { tool: 'github.create_issue', arguments: { amount: 10 } }), { code: 'wrong_issuer' });
    await assert.rejects(verify(agentApi.token!, { tool: 'github.create_issue', arguments: {} }), (e: any) => ['wrong_type', 'wrong_audience'].includes(e.code));
    // resource: a token for an action that named none does not cover one; a named one must match
    await assert.rejects(verify(token, { tool: 'github.create_issue', arguments: { amount: 10 }, resource: 'repo:acme/api' }), { code: 'wrong_resource' });
    const parts = token.split('.');
    const sig = parts[2]!;
    const tampered = `${parts[0]}.${parts[1]}.${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`;
    await assert.rejects(verify(tampered, { tool: 'github.create_issue', arguments: { amount: 10 } }), { code: 'invalid_token' });
    // a payload edited to claim other arguments no longer verifies
    const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString());
    payload.args_digest = argumentsDigest({ amount: 1000 });
    const forged = `${parts[0]}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${parts[2]}`;
    await assert.rejects(verify(forged, { tool: 'github.create_issue', arguments: { amount: 1000 } }), { code: 'invalid_token' });
  });
});

describe('sdk: an action token issued in a task\'s last seconds stops at the task\'s end', () => {
  it('refuses it from its exp on (no tolerance on exp), while a token from a clock slightly ahead still verifies', async () => {
    const start = Date.now();
    const clock = new ManualClock(start);
    const env = await setup('sqlite', { clock });
    try {
      const task = await env.createTask({ ttl_seconds: 60 });
      const agentApi = new Api(env.url, await env.taskToken(task.id));
      clock.advance(58_000);
      const r = await agentApi.call('POST', '/v1/authorize', { tool: 'github.create_issue', arguments: { a: 1 }, audience: 'https://tools.example/github' });
      assert.equal(r.body.decision, 'allow');
      const claims = JSON.parse(Buffer.from(r.body.action_token.split('.')[1], 'base64url').toString());
      const taskEnd = Math.floor(new Date(task.expires_at).getTime() / 1000);
      assert.equal(claims.exp, taskEnd);
      const jwks = await (await fetch(`${env.url}/.well-known/jwks.json`)).json();
      const at = (ms: number) => createActionVerifier({ issuer: env.url, audience: 'https://tools.example/github', jwks, now: () => ms });
      const call = { tool: 'github.create_issue', arguments: { a: 1 } };
      // before the end: fine; at the end and within the old 5 s tolerance after it: refused
      assert.equal((await at(taskEnd * 1000 - 500)(r.body.action_token, call)).jti, claims.jti);
      for (const ms of [taskEnd * 1000, taskEnd * 1000 + 1000, taskEnd * 1000 + 4999]) {
        await assert.rejects(at(ms)(r.body.action_token, call), { code: 'token_expired' });
      }
      // the tolerance still covers a verifier whose clock is behind the issuer's (iat in its future)
      assert.equal((await at(claims.iat * 1000 - 3000)(r.body.action_token, call)).jti, claims.jti);
    } finally {
      await env.teardown();
    }
  });
});
