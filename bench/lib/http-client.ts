import { WritClient } from '@writ/sdk';
import { BENCH_AGENT, BENCH_SCOPE } from './policies.js';
import { clientAssertion, CLIENT_ASSERTION_TYPE, makeAgentKey, type BenchAgentKey } from './identity.js';
import { Samples } from './stats.js';

export interface HttpResult {
  status: number;
  text: string;
}

/**
 * A client on keep-alive connections for driving load: the SDK's one API client on its
 * node:http transport (no redirects followed, a timeout on every call).
 */
export function loadClient(url: string, connections: number): WritClient {
  return new WritClient({ url, http: { keepAlive: true, maxSockets: connections }, timeoutMs: 60_000 });
}

/** One POST /v1/authorize with an already serialized body; the answer as text. */
export async function authorizeOnce(client: WritClient, token: string, body: string): Promise<HttpResult> {
  const r = await client.send({ method: 'POST', path: '/v1/authorize', token, jsonText: body });
  return { status: r.status, text: r.text };
}

/** A small operator/agent client for setting up a server over its API. */
export class BenchApi {
  // No keep-alive for setup calls: a socket left idle past the server's keepAliveTimeout
  // would be reset under the next request.
  readonly client: WritClient;

  constructor(url: string, readonly adminToken: string) {
    this.client = new WritClient({ url, http: { keepAlive: false, maxSockets: 4 }, timeoutMs: 60_000 });
  }

  async json(method: string, path: string, body?: unknown, token: string | null = this.adminToken): Promise<{ status: number; body: any }> {
    const r = await this.client.send({ method, path, json: body, token: token ?? undefined });
    return { status: r.status, body: r.body === undefined ? r.text : r.body };
  }

  async ok(method: string, path: string, body?: unknown, expect = [200, 201]): Promise<any> {
    const r = await this.json(method, path, body);
    if (!expect.includes(r.status)) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async putPolicies(text: string): Promise<void> {
    await this.ok('PUT', '/v1/policies', { policies: text });
  }

  async registerAgent(a: { id: string; name: string; labels: string[] }, key: BenchAgentKey): Promise<void> {
    await this.ok('POST', '/v1/agents', { ...a, jwks: { keys: [key.publicJwk] } });
  }

  async createTask(agentId: string, scope: unknown, maxActions: number): Promise<string> {
    const t = await this.ok('POST', '/v1/tasks', { agent_id: agentId, intent: 'benchmark: file the weekly billing report', scope, ttl_seconds: 3600, max_actions: maxActions });
    return t.id as string;
  }

  async taskToken(agentId: string, key: BenchAgentKey, taskId: string): Promise<string> {
    const r = await this.client.request({
      method: 'POST',
      path: '/oauth/token',
      form: { grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await clientAssertion(agentId, key), task_id: taskId },
    });
    return r.access_token as string;
  }

  close(): void {
    this.client.close();
  }
}

/** Registers an agent (labels of the bench agent), `tasks` tasks for it and a task token for each. */
export async function prepareAgentTasks(api: BenchApi, tasks: number, maxActions: number, agentId: string = BENCH_AGENT.id): Promise<{ tokens: string[]; taskIds: string[]; key: BenchAgentKey }> {
  const key = makeAgentKey();
  await api.registerAgent({ id: agentId, name: BENCH_AGENT.name, labels: BENCH_AGENT.labels }, key);
  const taskIds: string[] = [];
  const tokens: string[] = [];
  for (let i = 0; i < tasks; i++) {
    const taskId = await api.createTask(agentId, BENCH_SCOPE, maxActions);
    taskIds.push(taskId);
    tokens.push(await api.taskToken(agentId, key, taskId));
  }
  return { tokens, taskIds, key };
}

export interface LoadTarget {
  url: string;
  /** one task token per worker slot (worker w uses tokens[w % tokens.length]) */
  tokens: string[];
}

export interface LoadResult {
  concurrency: number;
  duration_s: number;
  requests: number;
  decisions_per_s: number;
  allow: number;
  deny: number;
  errors: number;
  statuses: Record<string, number>;
  samples: Samples;
}

/**
 * Drives POST /v1/authorize with `concurrency` requests in flight on keep-alive
 * connections for `durationMs`, spread over `targets` (worker w -> targets[w % n]).
 * Each worker sends its next request as soon as the previous answer is read.
 */
export async function authorizeLoad(
  targets: LoadTarget[],
  concurrency: number,
  durationMs: number,
  bodyFor: (i: number) => string,
): Promise<LoadResult> {
  const clients = targets.map((t) => loadClient(t.url, concurrency));
  const samples = new Samples(64 * 1024);
  const statuses: Record<string, number> = {};
  let allow = 0;
  let deny = 0;
  let errors = 0;
  let seq = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  const worker = async (w: number) => {
    const ti = w % targets.length;
    const target = targets[ti]!;
    const token = target.tokens[Math.floor(w / targets.length) % target.tokens.length]!;
    while (performance.now() < deadline) {
      const body = bodyFor(seq++);
      const t0 = performance.now();
      let r: HttpResult;
      try {
        r = await authorizeOnce(clients[ti]!, token, body);
      } catch {
        errors += 1;
        continue;
      }
      samples.push((performance.now() - t0) * 1000);
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      if (r.status !== 200) errors += 1;
      else if (r.text.startsWith('{"decision":"allow"')) allow += 1;
      else deny += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const elapsed = performance.now() - start;
  for (const c of clients) c.close();
  const requests = samples.count;
  return {
    concurrency,
    duration_s: Math.round(elapsed) / 1000,
    requests,
    decisions_per_s: Math.round((requests / elapsed) * 1000),
    allow,
    deny,
    errors,
    statuses,
    samples,
  };
}
