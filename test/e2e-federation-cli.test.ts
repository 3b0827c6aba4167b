import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { BOOT_TOKEN, makeAgentKeys, setup } from './helpers/harness.js';
import { writ } from './helpers/cli.js';



describe('writ issuer / token-exchange / delegate (CLI)', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let dir: string;
  let jwksServer: Server;
  let jwksUrl: string;
  let key: Awaited<ReturnType<typeof generateKeyPair>>;
  const cli = (args: string[]) => writ(args, { WRIT_URL: env.url, WRIT_TOKEN: BOOT_TOKEN });
  const ok = (r: Awaited<ReturnType<typeof writ>>) => {
    assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
    return r.json;
  };

  before(async () => {
    env = await setup('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'writ-fed-cli-'));
    key = await generateKeyPair('ES256', { extractable: true });
    const pub = { ...(await exportJWK(key.publicKey)), kid: 'ci-1' };
    jwksServer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [pub] })));
    await new Promise<void>((ok) => jwksServer.listen(0, '127.0.0.1', ok));
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
  });
  after(async () => {
    await env?.teardown();
    jwksServer?.closeAllConnections();
    await new Promise<void>((ok) => jwksServer?.close(() => ok()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('adds, lists, shows an issuer; exchanges a workload token from a file; delegates; removes the issuer', async () => {
    const rule = JSON.stringify({ claims: { sub: 'repo:acme/api:ref:refs/heads/main', repository: 'acme/api' }, agent_id: env.agent.id });
    const added = ok(await cli(['issuer', 'add', '--issuer', 'https://ci.acme.test', '--audience', 'writ', '--jwks-uri', jwksUrl, '--rule', rule]));
    assert.equal(added.kind, 'oidc');
    assert.equal(added.jwks_uri, jwksUrl);
    assert.deepEqual(added.rules[0].claims.repository, 'acme/api');
    const listed = ok(await cli(['issuer', 'list']));
    assert.ok(listed.issuers.some((i: any) => i.id === added.id));
    assert.equal(ok(await cli(['issuer', 'show', added.id])).issuer, 'https://ci.acme.test');

    const bad = await cli(['issuer', 'add', '--issuer', 'https://x.test', '--audience', 'writ', '--jwks-uri', 'http://jwks.example/k', '--rule', rule]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^writ issuer add: invalid_request: /);
    const usage = await cli(['issuer', 'add', '--issuer', 'https://x.test', '--audience', 'writ', '--jwks-uri', jwksUrl]);
    assert.equal(usage.code, 2);

    const task = await env.createTask({ max_actions: 5 });
    const now = Math.floor(Date.now() / 1000);
    const subject = await new SignJWT({ repository: 'acme/api', jti: 'run-1' })
      .setProtectedHeader({ alg: 'ES256', kid: 'ci-1', typ: 'JWT' })
      .setIssuer('https://ci.acme.test')
      .setSubject('repo:acme/api:ref:refs/heads/main')
      .setAudience('writ')
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(key.privateKey);
    const file = join(dir, 'token');
    writeFileSync(file, `${subject}\n`);
    const tok = ok(await cli(['token-exchange', '--subject-token', `@${file}`, '--task', task.id]));
    assert.equal(tok.token_type, 'Bearer');
    // the same token again is a replay
    const replay = await cli(['token-exchange', '--subject-token', subject, '--task', task.id]);
    assert.equal(replay.code, 1);
    assert.match(replay.stderr, /invalid_grant/);

    const helper = await makeAgentKeys('spiffe://acme.test/agent/cli-helper');
    assert.equal((await env.admin.call('POST', '/v1/agents', { id: helper.id, jwks: { keys: [helper.publicJwk] } })).status, 201);
    const child = ok(
      await cli(['delegate', '--task-token', tok.access_token, '--task', task.id, '--agent', helper.id, '--intent', 'label issues', '--tool', 'github.issues.*', '--ttl', '60', '--max-actions', '2']),
    );
    assert.equal(child.parent_id, task.id);
    assert.equal(child.depth, 1);
    const wider = await cli(['delegate', '--task-token', tok.access_token, '--task', task.id, '--agent', helper.id, '--intent', 'x', '--tool', '*', '--ttl', '60', '--max-actions', '1']);
    assert.equal(wider.code, 1);
    assert.match(wider.stderr, /^writ delegate: scope_not_subset: /);
    const shown = ok(await cli(['task', 'show', task.id]));
    assert.equal(shown.tree.children[0].id, child.id);

    // --keep-issued: the issuer is gone, the task token obtained through it still works
    assert.equal((await cli(['issuer', 'remove', added.id, '--keep-issued=yes'])).code, 2, 'a switch takes no value');
    const removed = ok(await cli(['issuer', 'remove', added.id, '--keep-issued']));
    assert.equal(removed.status, 'disabled');
    assert.equal(removed.keep_issued, true);
    assert.equal(removed.tokens_revoked, 0);
    const authorize = (token: string) => env.admin.call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: 'https://tools.example/github' }, { token });
    assert.equal((await authorize(tok.access_token)).body.decision, 'allow');
  });

  it('`issuer remove` ends the task tokens obtained through the issuer and says how many', async () => {
    const rule = JSON.stringify({ claims: { sub: 'repo:acme/web:ref:refs/heads/main', 'https://ci.acme.test/claims/repository': 'acme/web' }, agent_id: env.agent.id });
    const added = ok(await cli(['issuer', 'add', '--issuer', 'https://ci2.acme.test', '--audience', 'writ', '--jwks-uri', jwksUrl, '--rule', rule]));
    const task = await env.createTask();
    const now = Math.floor(Date.now() / 1000);
    const subject = await new SignJWT({ 'https://ci.acme.test/claims/repository': 'acme/web' })
      .setProtectedHeader({ alg: 'ES256', kid: 'ci-1' })
      .setIssuer('https://ci2.acme.test')
      .setSubject('repo:acme/web:ref:refs/heads/main')
      .setAudience('writ')
      .setExpirationTime(now + 300)
      .sign(key.privateKey);
    const tok = ok(await cli(['token-exchange', '--subject-token', subject, '--task', task.id]));
    const authorize = () => env.admin.call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: 'https://tools.example/github' }, { token: tok.access_token });
    assert.equal((await authorize()).body.decision, 'allow');
    const removed = ok(await cli(['issuer', 'remove', added.id]));
    assert.equal(removed.keep_issued, false);
    assert.equal(removed.tokens_revoked, 1);
    const after = await authorize();
    assert.equal(after.status, 401);
    assert.equal(after.body.error.code, 'issuer_removed');
  });
});
