import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { Api, backends, setup, startInstance, type Instance } from './helpers/harness.js';

/**
 * The lifecycle of what a trusted issuer vouched for: URL-named claims in rules,
 * removing an issuer ends the task tokens obtained through it (on every instance),
 * replay memory that outlives removing and adding the issuer again, and refusals that
 * can be found by task. Two instances share one store throughout.
 */

const TE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const AUD = 'https://tools.example/github';
const ROLE = 'https://acme.test/claims/role';
type Env = Awaited<ReturnType<typeof setup>>;

interface Key {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function makeKey(alg: 'RS256' | 'ES256', kid: string): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid } };
}

const now = () => Math.floor(Date.now() / 1000);

function sign(key: Key, claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid }).sign(key.privateKey);
}

for (const { backend, skip } of backends()) {
  describe(`federation lifecycle: claims, issuer removal, replay memory, findable refusals (${backend})`, { skip }, () => {
    let env: Env;
    let second: Instance;
    let api2: Api;
    let key: Key;
    let svidKey: Key;
    const svidAgent = 'spiffe://acme.test/agent/lifecycle-svid';

    const exchangeOn = (api: Api, subjectToken: string, taskId: string) =>
      api.form('/oauth/token', { grant_type: TE, subject_token: subjectToken, subject_token_type: JWT_TYPE, task_id: taskId });
    const exchange = (subjectToken: string, taskId: string) => exchangeOn(env.admin, subjectToken, taskId);
    const authorizeOn = (base: string, token: string) => new Api(base, token).call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: AUD });
    const claims = (iss: string, over: Record<string, unknown> = {}) => ({
      iss,
      sub: 'auth0|billing-agent',
      aud: 'writ',
      iat: now(),
      exp: now() + 600,
      jti: randomBytes(12).toString('base64url'),
      [ROLE]: 'deployer',
      ...over,
    });
    /** registers an OIDC issuer with inline keys; the rule maps `auth0|billing-agent` with role `deployer` */
    async function addIssuer(issuer: string, extraRules: unknown[] = []): Promise<any> {
      const r = await env.admin.call('POST', '/v1/issuers', {
        issuer,
        audience: 'writ',
        jwks: { keys: [key.publicJwk] },
        rules: [{ claims: { sub: 'auth0|billing-agent', [ROLE]: 'deployer' }, agent_id: env.agent.id }, ...extraRules],
      });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body;
    }
    async function audit(query: string): Promise<any[]> {
      const r = await env.admin.call('GET', `/v1/audit?${query}&limit=1000`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.entries;
    }
    async function exchanged(subjectToken: string, taskId: string, api: Api = env.admin): Promise<string> {
      const r = await exchangeOn(api, subjectToken, taskId);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.access_token;
    }
    async function refusedWith(r: { status: number; body: any }, taskId: string, reason: string): Promise<any> {
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error, 'invalid_grant', JSON.stringify(r.body));
      const entries = await audit(`task_id=${encodeURIComponent(taskId)}&type=token.refused`);
      const last = entries.at(-1);
      assert.ok(last, `a token.refused entry for task ${taskId}`);
      assert.equal(last.data.reason, reason, JSON.stringify(last.data));
      return last;
    }

    before(async () => {
      env = await setup(backend);
      // a second instance on the same store, signing as the same issuer
      second = await startInstance(await env.opened.another(), { issuer: env.url });
      api2 = new Api(second.url);
      key = await makeKey('RS256', 'idp-1');
      svidKey = await makeKey('ES256', 'svid-1');
      assert.equal((await env.admin.call('POST', '/v1/agents', { id: svidAgent })).status, 201);
    });
    after(async () => {
      await second?.close();
      await second?.writ.close().catch(() => undefined);
      await env?.teardown();
    });

    it('rules name URL and dotted claims literally, and nested claims by JSON Pointer; near variants do not match', async () => {
      const iss = 'https://tenant.auth0.test/'; // Auth0 issuers end in `/`
      await addIssuer(iss, [
        { claims: { sub: 'auth0|dotted', 'team.name': 'billing' }, agent_id: env.agent.id },
        { claims: { sub: 'auth0|nested', '/org/team': 'billing', '/org/..': 'up', '/a~1b': 'slash' }, agent_id: env.agent.id },
        { claims: { sub: 'auth0|escaped', '/https:~1~1acme.test~1claims~1role': 'auditor' }, agent_id: env.agent.id },
      ]);
      const task = await env.createTask();
      const ok = async (over: Record<string, unknown>) => {
        const r = await exchange(await sign(key, claims(iss, over)), task.id);
        assert.equal(r.status, 200, `${JSON.stringify(over)}: ${JSON.stringify(r.body)}`);
      };
      const no = async (name: string, over: Record<string, unknown>) => {
        const r = await exchange(await sign(key, claims(iss, over)), task.id);
        await refusedWith(r, task.id, 'no_matching_rule').catch((e) => assert.fail(`${name}: ${e.message}`));
      };
      // the URL-named claim, as Auth0 and Okta name custom claims
      await ok({});
      await no('URL claim with a trailing slash', { [ROLE]: undefined, [`${ROLE}/`]: 'deployer' });
      await no('URL claim without its last segment', { [ROLE]: undefined, 'https://acme.test/claims': { role: 'deployer' } });
      await no('URL claim as nested objects along its slashes', { [ROLE]: undefined, 'https:': { '': { 'acme.test': { claims: { role: 'deployer' } } } } });
      await no('URL claim in another case', { [ROLE]: undefined, [ROLE.toUpperCase()]: 'deployer' });
      await no('URL claim value in another case', { [ROLE]: 'Deployer' });
      await no('URL claim value in a list', { [ROLE]: ['deployer'] });
      // a literal name with a dot is not a path
      await ok({ sub: 'auth0|dotted', [ROLE]: undefined, 'team.name': 'billing' });
      await no('dotted name as nested objects', { sub: 'auth0|dotted', [ROLE]: undefined, team: { name: 'billing' } });
      // pointers: nested members; `..` is a member name, `~1` a slash inside one
      const nested = { sub: 'auth0|nested', [ROLE]: undefined, org: { team: 'billing', '..': 'up' }, 'a/b': 'slash' };
      await ok(nested);
      await no('pointer target as a literal top-level name', { ...nested, org: { '..': 'up' }, 'org/team': 'billing' });
      await no('`..` does not step up', { ...nested, org: { team: 'billing' }, '..': 'up' });
      await no('`~1` is a slash inside one name, not a path', { ...nested, 'a/b': undefined, a: { b: 'slash' } });
      // an escaped pointer to a URL-named top-level claim is the same claim as its literal name
      await ok({ sub: 'auth0|escaped', [ROLE]: 'auditor' });
      // the rule is shown as registered
      const shown = (await env.admin.call('GET', '/v1/issuers')).body.issuers.find((i: any) => i.issuer === iss);
      assert.deepEqual(shown.rules[0].claims, { sub: 'auth0|billing-agent', [ROLE]: 'deployer' });
    });

    it('removing an issuer ends every live task token obtained through it, at the next request on every instance; the audit log counts them', async () => {
      const iss = 'https://idp-remove.acme.test';
      const issuer = await addIssuer(iss);
      const t1 = await env.createTask();
      const t2 = await env.createTask();
      const idle = await env.createTask();
      // three tokens through the issuer (on both instances), one through the agent's own key
      const fed = [await exchanged(await sign(key, claims(iss)), t1.id), await exchanged(await sign(key, claims(iss)), t1.id, api2), await exchanged(await sign(key, claims(iss)), t2.id)];
      const own = await env.taskToken(t1.id);
      // a token of a task that ended since is not counted as cut off
      const ended = await exchanged(await sign(key, claims(iss)), idle.id);
      assert.equal((await env.admin.call('POST', `/v1/tasks/${idle.id}/complete`, {})).status, 200);
      for (const token of [...fed, own]) {
        for (const base of [env.url, second.url]) assert.equal((await authorizeOn(base, token)).body.decision, 'allow');
      }
      const introspected = await env.admin.form('/oauth/introspect', { token: fed[0]! }, env.admin.token);
      assert.equal(introspected.body.active, true);

      // removed through the second instance
      const del = await api2.call('DELETE', `/v1/issuers/${issuer.id}`, undefined, { token: env.admin.token });
      assert.equal(del.status, 200, JSON.stringify(del.body));
      assert.equal(del.body.status, 'disabled');
      assert.equal(del.body.keep_issued, false);
      assert.equal(del.body.tokens_revoked, 3);
      // the very next request, on either instance (the first one cached the tokens' verification)
      for (const token of fed) {
        for (const base of [env.url, second.url]) {
          const r = await authorizeOn(base, token);
          assert.equal(r.status, 401, JSON.stringify(r.body));
          assert.equal(r.body.error.code, 'issuer_removed');
          assert.match(r.body.error.message, new RegExp(issuer.id));
        }
      }
      assert.equal((await authorizeOn(env.url, ended)).status, 401);
      assert.equal((await authorizeOn(second.url, own)).body.decision, 'allow', 'a token from the agent\'s own key is untouched');
      assert.equal((await env.admin.form('/oauth/introspect', { token: fed[0]! }, env.admin.token)).body.active, false);
      // completing the task with a cut-off token is refused too
      assert.equal((await new Api(env.url, fed[2]).call('POST', `/v1/tasks/${t2.id}/complete`, {})).status, 401);

      const [entry] = (await audit('type=issuer.disabled')).filter((e) => e.data.issuer_id === issuer.id);
      assert.ok(entry);
      assert.equal(entry.actor.startsWith('operator:'), true);
      assert.deepEqual(
        { tokens_revoked: entry.data.tokens_revoked, keep_issued: entry.data.keep_issued, task_ids: entry.data.task_ids, issuer: entry.data.issuer },
        { tokens_revoked: 3, keep_issued: false, task_ids: [t1.id, t2.id].sort(), issuer: iss },
      );
      // a `fed` token without its issuance record, for another task, or with a bad `fed`, is refused (fail closed)
      const t = now();
      const base = { iss: env.url, sub: env.agent.id, aud: env.url, iat: t, exp: t + 60, txn: t1.id };
      const live = await addIssuer('https://idp-live.acme.test');
      const liveToken = await exchanged(await sign(key, claims('https://idp-live.acme.test')), t1.id);
      const liveJti = JSON.parse(Buffer.from(liveToken.split('.')[1]!, 'base64url').toString()).jti;
      const crafted: [string, Record<string, unknown>][] = [
        ['no issuance record', { ...base, jti: 'tt_unrecorded', fed: live.id }],
        ['another issuer than recorded', { ...base, jti: liveJti, fed: issuer.id }],
        ['another task than recorded', { ...base, jti: liveJti, fed: live.id, txn: t2.id }],
        ['`fed` not a string', { ...base, jti: liveJti, fed: 1 }],
        ['`fed` without a `jti`', { ...base, fed: live.id }],
      ];
      for (const [name, c] of crafted) {
        const r = await authorizeOn(second.url, env.writ.tokens.keys.signJwt('writ-task+jwt', c));
        assert.equal(r.status, 401, `${name}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error.code, 'invalid_token', name);
      }
      assert.equal((await authorizeOn(second.url, liveToken)).body.decision, 'allow');
      // adding the issuer again does not bring its old tokens back
      await addIssuer(iss);
      assert.equal((await authorizeOn(second.url, fed[0]!)).body.error.code, 'issuer_removed');
    });

    it('--keep-issued (`?keep_issued=true`) leaves issued task tokens working until they expire; new exchanges are refused', async () => {
      const iss = 'https://idp-keep.acme.test';
      const issuer = await addIssuer(iss);
      const task = await env.createTask();
      const token = await exchanged(await sign(key, claims(iss)), task.id);
      for (const q of ['keep_issued=yes', 'keep_issued=1', 'keep=true']) {
        const bad = await env.admin.call('DELETE', `/v1/issuers/${issuer.id}?${q}`);
        assert.equal(bad.status, 400, `${q}: ${JSON.stringify(bad.body)}`);
        assert.equal(bad.body.error.code, 'invalid_request');
      }
      assert.equal((await env.admin.call('GET', `/v1/issuers/${issuer.id}`)).body.status, 'active', 'a refused request changes nothing');
      const del = await env.admin.call('DELETE', `/v1/issuers/${issuer.id}?keep_issued=true`);
      assert.equal(del.status, 200, JSON.stringify(del.body));
      assert.equal(del.body.keep_issued, true);
      assert.equal(del.body.tokens_revoked, 0);
      for (const base of [env.url, second.url]) assert.equal((await authorizeOn(base, token)).body.decision, 'allow');
      await refusedWith(await exchange(await sign(key, claims(iss)), task.id), task.id, 'unknown_issuer');
      const [entry] = (await audit('type=issuer.disabled')).filter((e) => e.data.issuer_id === issuer.id);
      assert.equal(entry.data.keep_issued, true);
      assert.equal(entry.data.tokens_revoked, 0);
    });

    it('a removal racing exchanges on two instances: every token that was handed out is cut off, and counted', async () => {
      const iss = 'https://idp-race.acme.test';
      const issuer = await addIssuer(iss);
      const task = await env.createTask({ max_actions: 100 });
      const subjects = await Promise.all(Array.from({ length: 24 }, () => sign(key, claims(iss))));
      // the removal starts once the first token is out, while the rest are in flight
      let firstOut!: () => void;
      const oneOut = new Promise<void>((ok) => (firstOut = ok));
      const [answers, del] = await Promise.all([
        Promise.all(
          subjects.map(async (s, i) => {
            const a = await exchangeOn(i % 2 ? api2 : env.admin, s, task.id);
            if (a.status === 200) firstOut();
            return a;
          }),
        ).finally(() => firstOut()), // never wait forever
        oneOut.then(() => env.admin.call('DELETE', `/v1/issuers/${issuer.id}`)),
      ]);
      assert.equal(del.status, 200, JSON.stringify(del.body));
      const handedOut = answers.filter((a) => a.status === 200).map((a) => a.body.access_token as string);
      assert.ok(handedOut.length >= 1, JSON.stringify(answers.map((a) => a.body)));
      for (const a of answers.filter((x) => x.status !== 200)) assert.equal(a.body.error, 'invalid_grant', JSON.stringify(a.body));
      assert.equal(del.body.tokens_revoked, handedOut.length, `every token handed out was counted (${handedOut.length} of ${answers.length})`);
      for (const [i, token] of handedOut.entries()) {
        const r = await authorizeOn(i % 2 ? second.url : env.url, token);
        assert.equal(r.status, 401, JSON.stringify(r.body));
        assert.equal(r.body.error.code, 'issuer_removed');
      }
    });

    it('replay memory outlives removing and adding the issuer again, across spellings of its URL; another subject is another key', async () => {
      const task = await env.createTask();
      const other = await env.createTask();
      const jti = `jti-${randomBytes(6).toString('hex')}`;
      const sub2 = { claims: { sub: 'auth0|second-workload', [ROLE]: 'deployer' }, agent_id: env.agent.id };
      // first spelling: host in another case
      const r1 = await addIssuer('https://Replay.acme.test', [sub2]);
      const spent = await sign(key, claims('https://Replay.acme.test', { jti }));
      await exchanged(spent, task.id);
      await refusedWith(await exchange(spent, task.id), task.id, 'subject_token_replayed');
      // the exact scenario: remove, add the same issuer again, present the spent token again
      assert.equal((await env.admin.call('DELETE', `/v1/issuers/${r1.id}`)).status, 200);
      const r2 = await addIssuer('https://Replay.acme.test', [sub2]);
      assert.notEqual(r2.id, r1.id);
      await refusedWith(await exchange(spent, task.id), task.id, 'subject_token_replayed');
      await refusedWith(await exchangeOn(api2, spent, task.id), task.id, 'subject_token_replayed');
      // the same issuer spelled with a lowercase host and a trailing slash: the same memory
      assert.equal((await env.admin.call('DELETE', `/v1/issuers/${r2.id}`)).status, 200);
      const r3 = await addIssuer('https://replay.acme.test/', [sub2]);
      await refusedWith(await exchange(await sign(key, claims('https://replay.acme.test/', { jti })), task.id), task.id, 'subject_token_replayed');
      // and with its default port
      assert.equal((await env.admin.call('DELETE', `/v1/issuers/${r3.id}`)).status, 200);
      const r4 = await addIssuer('https://replay.acme.test:443', [sub2]);
      await refusedWith(await exchange(await sign(key, claims('https://replay.acme.test:443', { jti })), task.id), task.id, 'subject_token_replayed');
      // the same jti from another subject of the issuer is another token
      await exchanged(await sign(key, claims('https://replay.acme.test:443', { jti, sub: 'auth0|second-workload' })), task.id);
      // ... and the same token into another task is its first use there (one workload, many tasks)
      await exchanged(await sign(key, claims('https://replay.acme.test:443', { jti })), other.id);
      // another issuer with the same subject and jti is another key
      await addIssuer('https://replay-other.acme.test');
      await exchanged(await sign(key, claims('https://replay-other.acme.test', { jti })), task.id);
      // a token spent under the key of the release before (per issuer record) stays spent
      const legacyJti = `jti-${randomBytes(6).toString('hex')}`;
      await env.store.useOnce(`subject:${r4.id}:${task.id}:${legacyJti}`, Date.now() + 600_000, null);
      await refusedWith(await exchange(await sign(key, claims('https://replay.acme.test:443', { jti: legacyJti })), task.id), task.id, 'subject_token_replayed');
      // a path is part of the issuer's identity
      await addIssuer('https://replay.acme.test/tenant');
      await exchanged(await sign(key, claims('https://replay.acme.test/tenant', { jti })), task.id);
    });

    it('refusals are recorded under the task they named, with the matched issuer, and unverified claims apart', async () => {
      const iss = 'https://idp-audit.acme.test';
      const issuer = await addIssuer(iss);
      const spiffe = await env.admin.call('POST', '/v1/issuers', {
        issuer: 'spiffe://acme.test',
        audience: 'writ',
        jwks: { keys: [svidKey.publicJwk] },
        rules: [{ claims: { sub: svidAgent }, agent_id: svidAgent }],
      });
      assert.equal(spiffe.status, 201, JSON.stringify(spiffe.body));
      const task = await env.createTask();
      const attacker = await makeKey('RS256', 'idp-1');

      // a bad signature: matched issuer recorded; what the token claims only as unverified
      const forged = await refusedWith(await exchange(await sign(attacker, claims(iss, { sub: 'auth0|billing-agent', jti: 'forged-1' })), task.id), task.id, 'bad_signature');
      assert.equal(forged.task_id, task.id);
      assert.equal(forged.actor, 'anonymous');
      assert.equal(forged.agent_id, null);
      assert.equal(forged.data.task_id, task.id);
      assert.equal(forged.data.issuer, iss);
      assert.equal(forged.data.issuer_id, issuer.id);
      assert.equal(forged.data.claimed_subject_unverified, 'auth0|billing-agent');
      assert.equal(forged.data.claimed_jti_unverified, 'forged-1');
      assert.equal(forged.data.claimed_issuer_unverified, iss);
      assert.equal('subject' in forged.data, false, 'no unverified value where verified subjects go');
      assert.equal('subject_jti' in forged.data, false);

      // a JWT-SVID without `iss`: the trust domain's record is the issuer recorded
      const svid = await refusedWith(await exchange(await sign(await makeKey('ES256', 'svid-1'), { sub: svidAgent, aud: 'writ', exp: now() + 60 }), task.id), task.id, 'bad_signature');
      assert.equal(svid.data.issuer, 'spiffe://acme.test');
      assert.equal(svid.data.issuer_id, spiffe.body.id);
      assert.equal(svid.data.claimed_issuer_unverified, null);
      assert.equal(svid.data.claimed_subject_unverified, svidAgent);

      // no issuer matched: recorded as such, with what the token claimed
      const unknown = await refusedWith(await exchange(await sign(key, claims('https://evil.test')), task.id), task.id, 'unknown_issuer');
      assert.equal(unknown.data.issuer, null);
      assert.equal(unknown.data.issuer_id, null);
      assert.equal(unknown.data.claimed_issuer_unverified, 'https://evil.test');

      // not a JWT at all: still under the task
      await refusedWith(await exchange('not-a-jwt', task.id), task.id, 'malformed_subject_token');

      // verified, mapped to an agent, but the task is another agent's: the agent is the actor
      const svidTask = await env.createTask({ agent_id: svidAgent });
      const wrong = await refusedWith(await exchange(await sign(key, claims(iss, { jti: 'verified-1' })), svidTask.id), svidTask.id, 'task_not_for_agent');
      assert.equal(wrong.actor, `agent:${env.agent.id}`);
      assert.equal(wrong.agent_id, env.agent.id);
      assert.equal(wrong.task_id, svidTask.id);
      assert.equal(wrong.data.subject, 'auth0|billing-agent');
      assert.equal(wrong.data.subject_jti, 'verified-1');
      assert.equal('claimed_subject_unverified' in wrong.data, false);

      // a replay is recorded under its task too, with the verified subject
      const once = await sign(key, claims(iss, { jti: 'replay-audit' }));
      await exchanged(once, task.id);
      const replayed = await refusedWith(await exchange(once, task.id), task.id, 'subject_token_replayed');
      assert.equal(replayed.data.subject_jti, 'replay-audit');

      // a task id that does not exist is still the one recorded, so a search finds it
      const ghost = `tsk_${'x'.repeat(252)}`;
      await refusedWith(await exchange(await sign(attacker, claims(iss)), ghost), ghost, 'bad_signature');
      // one over the limit is refused at the edge, before anything is recorded
      const tooLong = await exchange(await sign(attacker, claims(iss)), `${ghost}x`);
      assert.equal(tooLong.status, 400);
      assert.equal(tooLong.body.error, 'invalid_request');
    });
  });
}
