import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { decodeProtectedHeader, SignJWT, generateKeyPair } from 'jose';
import pg from 'pg';
import { withDefaultUser } from '../src/store/postgres/postgres-store.js';
import { Api, makeAgentKeys, makeAssertion } from './helpers/harness.js';
import { spawnChild, type Child } from './helpers/child.js';
import { REPO } from './helpers/serve-process.js';

interface Instance {
  child: Child;
  url: string;
  stdout: () => string;
  stderr: () => string;
}

/** `writ serve` on port 0; resolves once it listens and has said what it did with the bootstrap token. */
async function startInstance(child: Child): Promise<Instance> {
  const line = await child.waitForLine(/writ listening on http:\/\//, { stream: 'stdout' });
  // printed after the listening line: wait for it, not for time
  await child.waitForLine(/admin operator created with WRIT_BOOTSTRAP_TOKEN|already an operator token of this store/, { stream: 'stdout' });
  return { child, url: /writ listening on (http:\/\/\S+)/.exec(line)![1]!, stdout: child.stdout, stderr: child.stderr };
}

/**
 * Issue 10 item 16: instances started together on an empty PostgreSQL schema. Real
 * processes (`writ serve`), started at once, several times: every start-up step
 * (migrations, the bootstrap admin, the default policy, the first signing key, the
 * checkpoint key) must happen once, every instance must start, and a token from each
 * must verify on every other at once, including right after a key rotation that follows
 * a reload (a reload is never skipped because another happened a moment before).
 */
const skip = process.env.WRIT_SKIP_POSTGRES ? `PostgreSQL unreachable: ${process.env.WRIT_SKIP_POSTGRES}` : false;
const url = process.env.WRIT_TEST_DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';
const ISSUER = 'http://writ.test';

async function sql<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: withDefaultUser(url, process.env.PGUSER) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

describe('instances starting together on an empty PostgreSQL database', { skip }, () => {
  const schemas: string[] = [];
  after(async () => {
    await sql(async (c) => {
      for (const s of schemas) await c.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    });
  });

  /** Starts `n` instances at once; every one that started is stopped before this returns or throws. */
  async function round(n: number): Promise<void> {
    const schema = `writ_cs_${randomBytes(6).toString('hex')}`;
    schemas.push(schema);
    const boot = `wop_${randomBytes(32).toString('base64url')}`;
    const env: NodeJS.ProcessEnv = { ...process.env, WRIT_DATABASE_URL: url, WRIT_DATABASE_SCHEMA: schema, WRIT_BOOTSTRAP_TOKEN: boot, WRIT_ISSUER: ISSUER, WRIT_KEY_ENCRYPTION_KEY: `kek_${randomBytes(32).toString('base64url')}` };
    // every spawn happens before the first await: the processes really start together
    const children = Array.from({ length: n }, () => spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0'], { cwd: REPO, env }));
    try {
      const settled = await Promise.allSettled(children.map(startInstance));
      const failed = settled.flatMap((s) => (s.status === 'rejected' ? [String((s.reason as Error).message)] : []));
      assert.deepEqual(failed, [], `every instance starts (${n} at once)`);
      await checkRound(settled.map((s) => (s as PromiseFulfilledResult<Instance>).value), boot, schema);
    } finally {
      // every child, started or not, in every path
      await Promise.all(children.map((c) => c.stop()));
    }
  }

  async function checkRound(instances: Instance[], boot: string, schema: string): Promise<void> {
    // one admin: exactly one instance created it; the others found it (no warning, no conflict)
    const created = instances.filter((i) => /admin operator created with WRIT_BOOTSTRAP_TOKEN/.test(i.stdout()));
    assert.equal(created.length, 1, instances.map((i) => i.stdout() + i.stderr()).join('\n---\n'));
    for (const i of instances) assert.doesNotMatch(i.stderr(), /conflict|warning|error/i, i.stderr());

    // one signing key and one checkpoint key, the same everywhere, and apart from each other
    const jwks = await Promise.all(instances.map(async (i) => (await (await fetch(`${i.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }));
    const auditKeys = await Promise.all(instances.map(async (i) => (await (await fetch(`${i.url}/.well-known/writ-audit-key`)).json()) as { keys: { kid: string }[] }));
    for (const k of jwks) assert.deepEqual(k, jwks[0]);
    for (const k of auditKeys) assert.deepEqual(k, auditKeys[0]);
    assert.equal(jwks[0]!.keys.length, 1);
    assert.equal(auditKeys[0]!.keys.length, 1);
    assert.notEqual(auditKeys[0]!.keys[0]!.kid, jwks[0]!.keys[0]!.kid);

    // each start-up write happened once, in one intact chain
    const counts = await sql(async (c) => {
      const r = await c.query(`SELECT type, count(*)::int AS n FROM "${schema}".audit GROUP BY type ORDER BY type`);
      const versions = await c.query(`SELECT count(*)::int AS n FROM "${schema}".schema_migrations`);
      return { types: Object.fromEntries(r.rows.map((x) => [x.type, x.n])), migrations: versions.rows[0].n };
    });
    assert.deepEqual(counts.types, { 'audit.checkpoint_key_created': 1, 'key.created': 1, 'operator.created': 1, 'policy.updated': 1 });
    assert.ok(counts.migrations >= 1);

    // a token from each instance verifies on every other at once
    const admin = new Api(instances[0]!.url, boot);
    const agent = await makeAgentKeys(`spiffe://acme.test/agent/cs-${randomBytes(4).toString('hex')}`);
    assert.equal((await admin.call('POST', '/v1/agents', { id: agent.id, jwks: { keys: [agent.publicJwk] } })).status, 201);
    const task = await admin.call('POST', '/v1/tasks', { agent_id: agent.id, intent: 'start together', scope: { tools: ['*'] }, ttl_seconds: 600, max_actions: 1000 });
    assert.equal(task.status, 201);
    const tokenFrom = async (i: { url: string }) => {
      const r = await new Api(i.url).form('/oauth/token', {
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await makeAssertion(agent, ISSUER),
        task_id: task.body.id,
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.access_token as string;
    };
    const verifyEverywhere = async (token: string) => {
      for (const j of instances) {
        const r = await new Api(j.url, token).call('GET', '/v1/tasks/current');
        assert.equal(r.status, 200, `${j.url}: ${JSON.stringify(r.body)}`);
      }
    };
    for (const i of instances) await verifyEverywhere(await tokenFrom(i));

    // every instance reloads its keys now (a token with a kid no one has) ...
    const { privateKey } = await generateKeyPair('Ed25519');
    const stranger = await new SignJWT({ txn: task.body.id }).setProtectedHeader({ alg: 'EdDSA', typ: 'writ-task+jwt', kid: 'no-such-kid' })
      .setIssuer(ISSUER).setAudience(ISSUER).setSubject(agent.id).setIssuedAt().setExpirationTime('5m').setJti('x').sign(privateKey);
    for (const j of instances) assert.equal((await new Api(j.url, stranger).call('GET', '/v1/tasks/current')).body.error.code, 'invalid_token');
    // ... then one rotates, and a token signed with the new key verifies on the others at once,
    // although they reloaded less than a second ago
    const rotated = await admin.call('POST', '/v1/keys/rotate');
    assert.equal(rotated.status, 200);
    const fresh = await tokenFrom(instances[0]!);
    assert.equal(decodeProtectedHeader(fresh).kid, rotated.body.kid);
    await verifyEverywhere(fresh);
  }

  for (const n of [2, 2, 2, 4, 4, 4]) {
    it(`${n} instances at once: all start, one of each start-up record, tokens verify across at once`, { timeout: 300_000 }, async () => {
      await round(n);
    });
  }
});
