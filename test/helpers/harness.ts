import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { ManualClock, type Clock } from '../../src/core/clock.js';
import { createHttpHandler, type HttpServerOptions } from '../../src/server/http-server.js';
import { createServer } from 'node:http';
import { Writ } from '../../src/app/writ.js';
import type { WritConfig } from '../../src/service/config.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { withDefaultUser } from '../../src/store/postgres/postgres-store.js';

export type Backend = 'sqlite' | 'postgres';

/** Which backends the end-to-end suites run on: SQLite always, PostgreSQL when reachable. */
export function backends(): { backend: Backend; skip: string | false }[] {
  const skip = process.env.WRIT_SKIP_POSTGRES;
  return [
    { backend: 'sqlite', skip: false },
    { backend: 'postgres', skip: skip ? `PostgreSQL suites skipped: ${skip}` : false },
  ];
}

export interface OpenedStore {
  store: Store;
  cleanup: () => Promise<void>;
  /** opens a second store on the same data (a second instance) */
  another: (clock?: Clock) => Promise<Store>;
}

export async function openTestStore(backend: Backend, clock?: Clock): Promise<OpenedStore> {
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'writ-test-'));
    const path = join(dir, 'writ.db');
    const store = new SqliteStore({ path, clock });
    return {
      store,
      another: async (c) => new SqliteStore({ path, clock: c ?? clock }),
      cleanup: async () => {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const { PostgresStore } = await import('../../src/store/postgres/postgres-store.js');
  const url = process.env.WRIT_TEST_DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';
  const schema = `writ_t_${randomBytes(6).toString('hex')}`;
  const store = new PostgresStore({ connectionString: url, clock, schema });
  const opened: Store[] = [store];
  return {
    store,
    another: async (c) => {
      const s = new PostgresStore({ connectionString: url, clock: c ?? clock, schema });
      opened.push(s);
      return s;
    },
    cleanup: async () => {
      const pg = await import('pg');
      for (const s of opened) await s.close().catch(() => undefined);
      const client = new pg.default.Client({ connectionString: withDefaultUser(url, process.env.PGUSER) });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    },
  };
}

export interface Instance {
  writ: Writ;
  server: Server;
  url: string;
  close: () => Promise<void>;
}

/** Starts Writ with its HTTP API on a loopback port chosen by the OS. */
export async function startInstance(
  store: Store,
  opts: { clock?: Clock; issuer?: string; config?: Partial<WritConfig>; failureLimit?: { max: number; windowMs: number }; http?: HttpServerOptions } = {},
): Promise<Instance> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const port = (s.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const writ = new Writ(store, { ...opts.config, issuer: opts.issuer ?? url }, opts.clock);
  await writ.init();
  const handler = createHttpHandler(writ, { log: () => undefined, ...(opts.failureLimit ? { failureLimit: opts.failureLimit } : {}), ...opts.http });
  s.on('request', (req, res) => void handler(req, res));
  return {
    writ,
    server: s,
    url,
    close: async () => {
      s.closeAllConnections();
      await new Promise<void>((ok) => s.close(() => ok()));
    },
  };
}

export interface AgentKeys {
  id: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
  alg: 'EdDSA' | 'ES256' | 'Ed25519';
}

export async function makeAgentKeys(id: string, alg: 'EdDSA' | 'ES256' = 'EdDSA'): Promise<AgentKeys> {
  const { privateKey, publicKey } = await generateKeyPair(alg === 'ES256' ? 'ES256' : 'Ed25519', { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { id, privateKey, publicJwk: { ...publicJwk, kid: 'k1' }, alg };
}

/** An RFC 7523 client assertion; every field can be overridden to make a bad one. */
export async function makeAssertion(
  agent: AgentKeys,
  audience: string,
  over: { iat?: number; exp?: number; jti?: string; iss?: string; sub?: string; aud?: string; alg?: string; key?: CryptoKey } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const iat = over.iat ?? now;
  return new SignJWT({ jti: over.jti ?? randomBytes(12).toString('base64url') })
    .setProtectedHeader({ alg: over.alg ?? agent.alg, kid: 'k1' })
    .setIssuer(over.iss ?? agent.id)
    .setSubject(over.sub ?? agent.id)
    .setAudience(over.aud ?? audience)
    .setIssuedAt(iat)
    .setExpirationTime(over.exp ?? iat + 60)
    .sign(over.key ?? agent.privateKey);
}

export class Api {
  constructor(
    readonly url: string,
    public token?: string,
  ) {}

  async call(method: string, path: string, body?: unknown, opts: { token?: string | null; contentType?: string; raw?: string } = {}): Promise<{ status: number; body: any; headers: Headers }> {
    const headers: Record<string, string> = {};
    const token = opts.token === null ? undefined : (opts.token ?? this.token);
    if (token) headers.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (opts.raw !== undefined) payload = opts.raw;
    else if (body !== undefined) payload = JSON.stringify(body);
    if (payload !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
    const r = await fetch(this.url + path, { method, headers, body: payload });
    const text = await r.text();
    let parsed: any = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not json */
    }
    return { status: r.status, body: parsed, headers: r.headers };
  }

  async form(path: string, fields: Record<string, string>, token?: string): Promise<{ status: number; body: any }> {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    if (token) headers.authorization = `Bearer ${token}`;
    const r = await fetch(this.url + path, { method: 'POST', headers, body: new URLSearchParams(fields).toString() });
    return { status: r.status, body: await r.json() };
  }
}

export const BOOT_TOKEN = 'wop_fBmvvbniuj-cmvhqlEUjWrSmfMVSX5QOomlGcEa_Dbs';

/** A running instance with an admin, one registered agent and helpers to get tokens. */
export async function setup(backend: Backend = 'sqlite', opts: { clock?: ManualClock; config?: Partial<WritConfig>; http?: HttpServerOptions; opened?: OpenedStore } = {}) {
  // `opened`: a store made by the test (its cleanup is then the fixture's)
  const opened = opts.opened ?? (await openTestStore(backend, opts.clock));
  const inst = await startInstance(opened.store, { clock: opts.clock, config: opts.config, ...(opts.http ? { http: opts.http } : {}) });
  await inst.writ.identity.bootstrapAdmin(BOOT_TOKEN);
  const admin = new Api(inst.url, BOOT_TOKEN);
  const agent = await makeAgentKeys('spiffe://acme.test/agent/billing');
  const reg = await admin.call('POST', '/v1/agents', { id: agent.id, name: 'billing', jwks: { keys: [agent.publicJwk] }, labels: ['billing'] });
  if (reg.status !== 201) throw new Error(`agent registration failed: ${JSON.stringify(reg.body)}`);
  const createTask = async (over: Record<string, unknown> = {}) => {
    const r = await admin.call('POST', '/v1/tasks', {
      agent_id: agent.id,
      intent: 'file the weekly billing report',
      scope: { tools: ['github.*', 'billing.read'], resources: [], destinations: [] },
      ttl_seconds: 600,
      max_actions: 10,
      ...over,
    });
    if (r.status !== 201) throw new Error(`task creation failed: ${JSON.stringify(r.body)}`);
    return r.body as { id: string; expires_at: string };
  };
  const taskToken = async (taskId: string, a: AgentKeys = agent) => {
    const assertion = await makeAssertion(a, inst.url);
    const r = await admin.form('/oauth/token', {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
      task_id: taskId,
    });
    if (r.status !== 200) throw new Error(`token failed: ${JSON.stringify(r.body)}`);
    return r.body.access_token as string;
  };
  return {
    ...inst,
    store: opened.store,
    opened,
    admin,
    agent,
    createTask,
    taskToken,
    teardown: async () => {
      await inst.close();
      await inst.writ.close().catch(() => undefined);
      await opened.cleanup();
    },
  };
}
