import http from 'node:http';
import { BENCH_AGENT, BENCH_SCOPE } from './policies.js';
import { clientAssertion, CLIENT_ASSERTION_TYPE, makeAgentKey, type BenchAgentKey } from './identity.js';
import { Samples } from './stats.js';

export interface HttpResult {
  status: number;
  text: string;
}

/** One request on a keep-alive agent; resolves with the whole body as text. */
export function request(
  agent: http.Agent,
  base: URL,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string | Buffer,
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const buf = body === undefined ? undefined : typeof body === 'string' ? Buffer.from(body) : body;
    const req = http.request(
      {
        host: base.hostname,
        port: base.port,
        method,
        path,
        agent,
        headers: buf ? { ...headers, 'content-length': String(buf.length) } : headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(buf);
  });
}

/** A small operator/agent client for setting up a server over its API. */
export class BenchApi {
  readonly base: URL;
  // No keep-alive for setup calls: a socket left idle past the server's keepAliveTimeout
  // would be reset under the next request.
  readonly agent = new http.Agent({ keepAlive: false, maxSockets: 4 });

  constructor(url: string, readonly adminToken: string) {
    this.base = new URL(url);
  }

  async json(method: string, path: string, body?: unknown, token: string | null = this.adminToken): Promise<{ status: number; body: any }> {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await request(this.agent, this.base, method, path, headers, body === undefined ? undefined : JSON.stringify(body));
    let parsed: unknown = r.text;
    try {
      parsed = JSON.parse(r.text);
    } catch {
      /* not JSON */
    }
    return { status: r.status, body: parsed };
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
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: CLIENT_ASSERTION_TYPE,
      client_assertion: await clientAssertion(agentId, key),
      task_id: taskId,
    }).toString();
    const r = await request(this.agent, this.base, 'POST', '/oauth/token', { 'content-type': 'application/x-www-form-urlencoded' }, form);
    if (r.status !== 200) throw new Error(`POST /oauth/token: ${r.status} ${r.text}`);
    return JSON.parse(r.text).access_token as string;
  }

  close(): void {
    this.agent.destroy();
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
  const agents = targets.map(() => new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency }));
  const bases = targets.map((t) => new URL(t.url));
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
    const headers = { authorization: `Bearer ${target.tokens[Math.floor(w / targets.length) % target.tokens.length]}`, 'content-type': 'application/json' };
    while (performance.now() < deadline) {
      const body = bodyFor(seq++);
      const t0 = performance.now();
      let r: HttpResult;
      try {
        r = await request(agents[ti]!, bases[ti]!, 'POST', '/v1/authorize', headers, body);
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
  for (const a of agents) a.destroy();
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
