import { verifyDpopProof } from '../tokens/dpop.js';
import { authenticateTaskRequest, verifyTaskRequest } from './task-auth.js';
import { stageEnd } from '../core/stage-profile.js';
import { nameServerSpan, serverSpan, tracingOn } from '../core/tracing.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { InvalidRequestError, NotFoundError, OAuthError, RateLimitedError, WritError } from '../core/errors.js';
import type { Writ } from '../service/writ.js';
import { ClientAddresses, limiterKey } from './client-address.js';
import type { Drain } from './drain.js';
import { FailureLimiter } from './failure-limiter.js';
import { credentialOf } from './request-credential.js';
import { bearer, readForm, readJson, sendError, sendJson } from './http-io.js';
import {
  auditQuerySchema,
  auditVerifySchema,
  parseAuthorizeBody,
  consumeSchema,
  createOperatorSchema,
  createTaskSchema,
  introspectFormSchema,
  outcomeSchema,
  outcomesSchema,
  parse,
  policySchema,
  policyQuerySchema,
  putPolicyQuerySchema,
  simulatePolicySchema,
  registerAgentSchema,
  revokeSchema,
  taskQuerySchema,
  taskOfTokenRequest,
  tokenFormSchema,
  toolLabelsSchema,
  visibleToolsSchema,
  buildOpenApi,
  agentView,
  agentTaskView,
  agentTasksQuerySchema,
  auditView,
  decisionView,
  iso,
  taskView,
} from '../wire/index.js';
import { registerDelegationRoutes } from './routes-delegation.js';
import { registerFederationRoutes } from './routes-federation.js';
import { registerPolicyShadowRoutes } from './routes-policy-shadow.js';
import { registerOperatorRoutes } from './routes-operators.js';
import { registerEscalationRoutes } from './routes-escalations.js';
import { registerAuditEvidenceRoutes } from './routes-audit-evidence.js';
import { registerAuthzenRoutes } from './routes-authzen.js';
import { consoleBridge, isConsoleBridge, registerConsoleRoutes } from './routes-console.js';
import { ConsoleSessions } from './console-session.js';
import { ifNoneMatchOf } from '../service/agent-tasks.js';

type Handler = (ctx: { req: IncomingMessage; res: ServerResponse; params: string[]; url: URL }) => Promise<void>;

interface Route {
  method: string;
  /** the template (`/v1/tasks/{id}`): what metrics and logs name, never the raw path */
  path: string;
  pattern: RegExp;
  handler: Handler;
  oauth?: boolean;
}

export interface HttpServerOptions {
  log?: (msg: string, err?: unknown) => void;
  /** failed requests without a valid credential one client address may make per window before it gets 429 (default 1,000 per 10 s) */
  failureLimit?: { max: number; windowMs: number };
  /** failed requests one valid credential (operator, agent, subject, action token) may make per window (default 1,000 per 10 s) */
  credentialFailureLimit?: { max: number; windowMs: number };
  /** proxies (addresses, CIDR ranges) whose `X-Forwarded-For` names the client; none by default */
  trustedProxies?: string[];
  /** the server's drain: `/readyz` answers 503 once it began (src/server/drain.ts) */
  drain?: Drain;
  /** a bearer token that may read `/metrics` besides admin and auditor operators (WRIT_METRICS_TOKEN) */
  metricsToken?: string;
  /** called once per finished response (the access log) */
  onResponse?: (info: { req: IncomingMessage; res: ServerResponse; route: string; latencyMs: number }) => void;
}


/**
 * The HTTP API (design §4) on node:http: a framework would add nothing here but
 * cost. Every route parses its input with zod at the edge and maps errors through
 * one function, so no response carries a stack trace or a token.
 */
export function createHttpHandler(writ: Writ, options: HttpServerOptions = {}) {
  const log = options.log ?? ((msg: string, err?: unknown) => console.error(msg, err instanceof Error ? err.message : (err ?? '')));
  const routes: Route[] = [];
  const route = (method: string, path: string, handler: Handler, oauth = false) => {
    const pattern = new RegExp(`^${path.replace(/\{[a-z_]+\}/g, '([^/]+)')}$`);
    routes.push({ method, path, pattern, handler, oauth });
  };
  const operator = (req: IncomingMessage) => writ.identity.authenticateOperator(bearer(req));

  // --- public ---
  route('GET', '/healthz', async ({ res }) => sendJson(res, 200, { status: 'ok' }));
  // the OpenAPI 3.1 document of this API, generated from the wire schemas (docs/openapi.json)
  let openApi: Record<string, unknown> | undefined;
  route('GET', '/openapi.json', async ({ res }) => sendJson(res, 200, (openApi ??= buildOpenApi())));
  route('GET', '/readyz', async ({ res }) => {
    // shutting down: out of the load balancer at once, whatever the checks say
    if (options.drain?.draining) return sendJson(res, 503, { status: 'draining' });
    const r = await writ.ready();
    const ok = r.store && r.keys && r.policy;
    sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'not_ready', checks: r });
  });
  route('GET', '/.well-known/jwks.json', async ({ res }) => {
    await writ.tokens.keys.refresh(false);
    sendJson(res, 200, writ.tokens.keys.jwks(), { 'cache-control': 'public, max-age=60' });
  });
  route('GET', '/.well-known/oauth-authorization-server', async ({ res }) => {
    // RFC 8414 §2
    const iss = writ.config.issuer;
    sendJson(res, 200, {
      issuer: iss,
      // RFC 8414 §2 needs this only for grants that use it (Writ has none), but stock MCP
      // clients require the member: the endpoint answers `unsupported_response_type`
      authorization_endpoint: `${iss}/oauth/authorize`,
      token_endpoint: `${iss}/oauth/token`,
      jwks_uri: `${iss}/.well-known/jwks.json`,
      introspection_endpoint: `${iss}/oauth/introspect`,
      // none: task tokens come from the token endpoint only (client_credentials + private_key_jwt)
      response_types_supported: [],
      grant_types_supported: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['EdDSA', 'Ed25519', 'ES256'],
      introspection_endpoint_auth_methods_supported: ['bearer'],
      // RFC 9449 §5.1: task tokens can be bound to a key (DPoP)
      dpop_signing_alg_values_supported: ['EdDSA', 'ES256'],
    }, { 'cache-control': 'public, max-age=300' });
  });

  // RFC 6749 §4.1.2.1: with no authorization flow there is no redirect URI to trust, so
  // the error is answered here, never redirected; a typed refusal, not a half-working flow
  const noAuthorizationFlow = async () => {
    throw new OAuthError('unsupported_response_type', 'Writ has no authorization endpoint flow: an agent gets a task token at `POST /oauth/token` (client_credentials with a `private_key_jwt` client assertion, the task as `task_id` or scope `task:<task id>`)');
  };
  route('GET', '/oauth/authorize', noAuthorizationFlow, true);
  route('POST', '/oauth/authorize', noAuthorizationFlow, true);

  // --- agent side ---
  route('POST', '/oauth/token', async ({ req, res }) => {
    const form = await readForm(req).catch((err) => {
      if (err instanceof WritError && err.status === 400) throw new OAuthError('invalid_request', err.message);
      throw err;
    });
    const parsed = tokenFormSchema.safeParse(form);
    if (!parsed.success) throw new OAuthError('invalid_request', parsed.error.issues[0]!.message);
    const tokenRequest = taskOfTokenRequest(parsed.data);
    // RFC 9449 §5: a `DPoP` proof on the token request binds the token to its key
    const proof = req.headers.dpop;
    const binding =
      proof === undefined
        ? {}
        : { jkt: await verifyDpopProof(proof, { method: 'POST', url: writ.tokens.tokenEndpoint, nowMs: writ.clock.now(), replay: writ.tokens.dpopReplay, nonces: writ.tokens.dpopNonces, status: 400 }) };
    sendJson(res, 200, await writ.tokens.issueTaskToken(tokenRequest, binding), { pragma: 'no-cache' });
  }, true);

  route('POST', '/v1/authorize', async ({ req, res }) => {
    // stage marks: CPU accounting for the benchmarks, off (one branch each) otherwise
    stageEnd('http_in');
    const started = performance.now();
    const ctx = await authenticateTaskRequest(writ, req);
    writ.metrics.observeStage('authenticate', started);
    stageEnd('authenticate');
    const action = parseAuthorizeBody(await readJson(req));
    stageEnd('parse');
    const result = await writ.authz.authorize(ctx, action as never);
    res.setHeader('x-writ-decision-id', result.decision_id);
    sendJson(res, 200, result);
    writ.metrics.observeStage('total', started);
    stageEnd('respond');
  });

  // Prometheus exposition. Never open: an admin or auditor operator token, or the
  // WRIT_METRICS_TOKEN (compared by SHA-256 digest in constant time), or a separate
  // listener an operator configured on purpose (WRIT_METRICS_PORT, src/cli/serve.ts).
  route('GET', '/metrics', async ({ req, res }) => {
    const presented = bearer(req);
    if (!(options.metricsToken && presented !== null && sameSecret(presented, options.metricsToken))) {
      writ.audit.requireAuditor(await writ.identity.authenticateOperator(presented));
    }
    await sendMetrics(res, writ);
  });

  // An agent's own active tasks, with its key (a client assertion for this URL), long-polled:
  // how a gateway configured once follows the tasks operators assign (src/service/agent-tasks.ts)
  route('GET', '/v1/agents/{id}/tasks', async ({ req, res, params, url }) => {
    const agent = await writ.tasks.agentTasks.authenticate(bearer(req), params[0]!);
    const q = parse(agentTasksQuerySchema, Object.fromEntries(url.searchParams));
    const ifNoneMatch = ifNoneMatchOf(req.headers['if-none-match']);
    const ac = new AbortController();
    res.once('close', () => ac.abort());
    const r = await writ.tasks.agentTasks.list(agent.id, { waitSeconds: q.wait ?? 0, ...(ifNoneMatch !== undefined ? { ifNoneMatch } : {}), signal: ac.signal });
    if (r.notModified) {
      res.writeHead(304, { etag: r.etag, 'cache-control': 'no-store' }).end();
      return;
    }
    sendJson(res, 200, { tasks: r.tasks.map(agentTaskView) }, { etag: r.etag, 'cache-control': 'no-store' });
  });

  // The task token's own task, if it is active (401 otherwise): how a gateway or proxy
  // authenticates an agent, task state included, before it reads a request body.
  route('GET', '/v1/tasks/current', async ({ req, res }) => {
    const { task, agent } = await authenticateTaskRequest(writ, req);
    sendJson(res, 200, { task_id: task.id, agent_id: agent.id, status: task.status, expires_at: new Date(task.expiresAt).toISOString() });
  });

  // For a gateway's tools/list: which of these tools could this task be allowed to call?
  route('POST', '/v1/tools/visible', async ({ req, res }) => {
    const ctx = await authenticateTaskRequest(writ, req);
    const body = parse(visibleToolsSchema, await readJson(req));
    sendJson(res, 200, { tools: await writ.authz.visibleTools(ctx, body.tools) });
  });

  route('POST', '/v1/actions/consume', async ({ req, res }) => {
    const body = parse(consumeSchema, await readJson(req));
    sendJson(res, 200, await writ.tokens.consume(body.action_token, body.audience));
  });

  route('POST', '/v1/actions/{id}/outcome', async ({ req, res, params }) => {
    const principal = await verifyTaskRequest(writ, req).catch((err) => {
      throw err instanceof WritError ? err : new OAuthError('invalid_client', 'bad token');
    });
    const body = parse(outcomeSchema, await readJson(req));
    // `Prefer: respond-async` (RFC 7240): 202 once checked and queued, before it is
    // written (with the next batch of decisions); the MCP gateway never waits on an outcome
    const queue = /(^|[,;\s])respond-async(\s*(,|;|$))/i.test(String(req.headers.prefer ?? ''));
    sendJson(res, queue ? 202 : 200, await writ.authz.reportOutcome(principal, params[0]!, body, { wait: !queue }));
  });

  // Several outcomes of the token's task at once, each checked as the route above checks
  // one and queued (202; written with the next batch of decisions): one request, one
  // token check and one access-log line for all the outcomes a gateway gathered. An
  // outcome refused (unknown decision, another task's, not an allow, reported before)
  // is answered in its place with its error; the others are queued.
  route('POST', '/v1/actions/outcomes', async ({ req, res }) => {
    const principal = await verifyTaskRequest(writ, req).catch((err) => {
      throw err instanceof WritError ? err : new OAuthError('invalid_client', 'bad token');
    });
    const body = parse(outcomesSchema, await readJson(req));
    const outcomes = [];
    for (const o of body.outcomes) {
      try {
        outcomes.push(await writ.authz.reportOutcome(principal, o.decision_id, { status: o.status, ...(o.detail === undefined ? {} : { detail: o.detail }) }, { wait: false }));
      } catch (err) {
        if (!(err instanceof WritError) || !err.expose) throw err;
        outcomes.push({ decision_id: o.decision_id, error: { code: err.code, message: err.message } });
      }
    }
    sendJson(res, 202, { outcomes });
  });

  route('POST', '/v1/tasks/{id}/complete', async ({ req, res, params }) => {
    const token = bearer(req);
    await readJson(req, true);
    const actor = await (async () => {
      try {
        return { operator: await writ.identity.authenticateOperator(token) };
      } catch {
        return { task: (await authenticateTaskRequest(writ, req)).principal };
      }
    })();
    const r = await writ.tasks.completeTask(actor, params[0]!);
    sendJson(res, 200, r);
  });

  // --- operator side ---
  route('POST', '/v1/operators', async ({ req, res }) => {
    const op = await operator(req);
    const body = parse(createOperatorSchema, await readJson(req));
    sendJson(res, 201, await writ.identity.createOperator(op, body));
  });

  route('POST', '/v1/agents', async ({ req, res }) => {
    const op = await operator(req);
    const body = parse(registerAgentSchema, await readJson(req));
    sendJson(res, 201, agentView(await writ.identity.registerAgent(op, body)));
  });
  route('GET', '/v1/agents', async ({ req, res }) => {
    const op = await operator(req);
    sendJson(res, 200, { agents: (await writ.identity.listAgents(op)).map(agentView) });
  });
  route('GET', '/v1/agents/{id}', async ({ req, res, params }) => {
    const op = await operator(req);
    sendJson(res, 200, agentView(await writ.identity.getAgent(op, params[0]!)));
  });
  route('POST', '/v1/agents/{id}/disable', async ({ req, res, params }) => {
    const op = await operator(req);
    await readJson(req, true);
    sendJson(res, 200, { id: params[0], status: 'disabled', ...(await writ.identity.disableAgent(op, params[0]!)) });
  });

  route('POST', '/v1/tasks', async ({ req, res }) => {
    const op = await operator(req);
    const body = parse(createTaskSchema, await readJson(req));
    sendJson(res, 201, taskView(await writ.tasks.createTask(op, body)));
  });
  route('GET', '/v1/tasks', async ({ req, res, url }) => {
    const op = await operator(req);
    const q = parse(taskQuerySchema, Object.fromEntries(url.searchParams));
    const tasks = await writ.tasks.listTasks(op, { agentId: q.agent_id, status: q.status, limit: q.limit });
    sendJson(res, 200, { tasks: tasks.map(taskView) });
  });
  route('GET', '/v1/tasks/{id}', async ({ req, res, params }) => {
    const op = await operator(req);
    const d = await writ.tasks.getTaskDetail(op, params[0]!);
    sendJson(res, 200, { ...taskView(d.task), decisions: d.decisions.map(decisionView), delegations: d.delegations.map(taskView), tree: d.tree });
  });
  route('POST', '/v1/tasks/{id}/revoke', async ({ req, res, params }) => {
    const op = await operator(req);
    const body = parse(revokeSchema, await readJson(req, true));
    sendJson(res, 200, await writ.tasks.revokeTask(op, params[0]!, body.reason));
  });

  route('GET', '/v1/policies', async ({ req, res, url }) => {
    const op = await operator(req);
    const q = parse(policyQuerySchema, Object.fromEntries(url.searchParams));
    const current = await writ.policy.getPolicy(op);
    // the change history (who, when, diff) is for the roles that read the audit log
    const history = op.roles.includes('admin') || op.roles.includes('auditor') ? await writ.policy.listPolicyHistory(op, q.limit) : undefined;
    sendJson(res, 200, { ...current, ...(history ? { history } : {}) }, { etag: `"${current.version}"` });
  });
  // before `/v1/policies/{version}`: `shadow` is no version
  registerPolicyShadowRoutes(writ, route, parseIfMatch);
  route('POST', '/v1/policies/simulate', async ({ req, res }) => {
    const op = await operator(req);
    const body = parse(simulatePolicySchema, await readJson(req));
    sendJson(res, 200, await writ.policy.simulatePolicy(op, body.policies, { sinceMs: Date.parse(body.since), limit: body.limit, examples: body.examples }));
  });
  route('GET', '/v1/policies/{version}', async ({ req, res, params }) => {
    const op = await operator(req);
    const p = await writ.policy.getPolicyVersion(op, params[0]!);
    sendJson(res, 200, { version: p.version, policies: p.text, created_at: iso(p.createdAt), created_by: p.createdBy }, { etag: `"${p.version}"` });
  });
  route('PUT', '/v1/policies', async ({ req, res, url }) => {
    const op = await operator(req);
    const q = parse(putPolicyQuerySchema, Object.fromEntries(url.searchParams));
    const ifMatch = parseIfMatch(req.headers['if-match']);
    const body = parse(policySchema, await readJson(req));
    // `?mode=shadow`: the candidate evaluated beside the live set (If-Match: the candidate's version)
    const r = q.mode === 'shadow'
      ? await writ.policy.shadow.put(op, body.policies, ifMatch === undefined ? {} : { ifMatch })
      : await writ.policy.putPolicy(op, body.policies, ifMatch === undefined ? {} : { ifMatch });
    sendJson(res, 200, r, { etag: `"${r.version}"` });
  });

  route('GET', '/v1/keys', async ({ req, res }) => {
    const op = await operator(req);
    sendJson(res, 200, { keys: await writ.tokens.listKeys(op) });
  });
  route('POST', '/v1/keys/rotate', async ({ req, res }) => {
    const op = await operator(req);
    await readJson(req, true);
    sendJson(res, 200, await writ.tokens.rotateKeys(op));
  });

  route('GET', '/v1/tool-labels', async ({ req, res }) => {
    const op = await operator(req);
    const entries = await writ.policy.listToolLabels(op);
    sendJson(res, 200, { tool_labels: entries.map((e) => ({ pattern: e.pattern, labels: e.labels, updated_at: iso(e.updatedAt), updated_by: e.updatedBy })) });
  });
  route('PUT', '/v1/tool-labels', async ({ req, res }) => {
    const op = await operator(req);
    const body = parse(toolLabelsSchema, await readJson(req));
    const e = await writ.policy.putToolLabels(op, body.pattern, body.labels);
    sendJson(res, 200, { pattern: e.pattern, labels: e.labels, updated_at: iso(e.updatedAt), updated_by: e.updatedBy });
  });

  route('GET', '/v1/audit', async ({ req, res, url }) => {
    const op = await operator(req);
    const q = parse(auditQuerySchema, Object.fromEntries(url.searchParams));
    const entries = await writ.audit.listAudit(op, { taskId: q.task_id, agentId: q.agent_id, type: q.type, decisionId: q.decision_id, after: q.after, limit: q.limit ?? 100 });
    const next = entries.length > 0 ? entries[entries.length - 1]!.seq : null;
    sendJson(res, 200, { entries: entries.map(auditView), next_after: next });
  });
  route('GET', '/v1/audit/verify', async ({ req, res }) => {
    const op = await operator(req);
    sendJson(res, 200, await writ.audit.verifyAudit(op));
  });
  route('POST', '/v1/audit/verify', async ({ req, res }) => {
    const op = await operator(req);
    const body = parse(auditVerifySchema, await readJson(req));
    sendJson(res, 200, await writ.audit.verifyAudit(op, body.checkpoints));
  });
  route('POST', '/v1/audit/checkpoints', async ({ req, res }) => {
    const op = await operator(req);
    await readJson(req, true);
    sendJson(res, 201, await writ.audit.checkpointAudit(op));
  });

  route('POST', '/oauth/introspect', async ({ req, res }) => {
    const op = await operator(req);
    const form = parse(introspectFormSchema, await readForm(req));
    sendJson(res, 200, await writ.tokens.introspect(op, form.token));
  });

  registerDelegationRoutes(writ, route);
  registerFederationRoutes(writ, route);
  registerOperatorRoutes(writ, route);
  registerEscalationRoutes(writ, route, operator);
  registerAuditEvidenceRoutes(writ, route);
  registerAuthzenRoutes(writ, route);

  const addresses = new ClientAddresses(options.trustedProxies ?? []);
  // the operator console (/console): its pages, sessions, and /console/api/v1 → /v1
  const consoleDeps = { sessions: new ConsoleSessions(() => writ.clock.now()), proxies: addresses, drain: options.drain };
  registerConsoleRoutes(writ, route, consoleDeps);
  const bridge = consoleBridge(writ, consoleDeps);
  const byAddress = new FailureLimiter(options.failureLimit?.max ?? 1000, options.failureLimit?.windowMs ?? 10_000, () => writ.clock.now());
  const byCredential = new FailureLimiter(
    options.credentialFailureLimit?.max ?? 1000,
    options.credentialFailureLimit?.windowMs ?? 10_000,
    () => writ.clock.now(),
  );
  const refuseLimited = async (
    res: ServerResponse,
    req: IncomingMessage,
    limiter: FailureLimiter,
    limited: ReturnType<FailureLimiter['check']>,
    who: Record<string, unknown>,
  ) => {
    if (!limited.blocked) return false;
    if (limited.report) {
      await writ.audit.securityEvent('security.rate_limited', 'anonymous', { ...who, failures: limited.count, window_ms: limiter.windowMs }).catch(() => undefined);
    }
    const what = 'remote_address' in who ? 'this address' : 'this credential';
    sendError(res, new RateLimitedError(`too many failed requests from ${what}; retry later`, { retryAfterSeconds: limited.retryAfterMs / 1000 }), false);
    if (!req.complete) req.resume();
    return true;
  };
  /** `credential:kind:id` as audit data: the principal's id, never the token. */
  const credentialData = (key: string) => ({ credential: key.slice(0, 300) });

  // tracing on: one server span per request, continuing its `traceparent` (src/core/tracing.ts)
  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    return tracingOn() ? serverSpan(req, res, () => serveRequest(req, res)) : serveRequest(req, res);
  };

  async function serveRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedAt = performance.now();
    // the route's template, not the raw path: ids and junk paths never become labels
    let routeName = 'unmatched';
    res.once('finish', () => {
      const method = KNOWN_METHODS.has(req.method ?? '') ? req.method! : 'other';
      writ.metrics.observeHttp(method, routeName, res.statusCode, (performance.now() - startedAt) / 1000);
      options.onResponse?.({ req, res, route: routeName, latencyMs: performance.now() - startedAt });
    });
    if (isConsoleBridge(req) && !bridge(req, res)) return;
    let url: URL;
    let oauth = false;
    const client = addresses.of(req);
    const clientKey = limiterKey(client);
    // parsed once: the limiter's path here, the route's URL below
    const parsedUrl = parseUrl(req.url);
    const path = parsedUrl?.pathname ?? (req.url ?? '/').split('?')[0]!;
    // Health checks and published keys never fail and cost nothing: a load balancer's
    // probe from an address that others abused still gets its answer.
    const exempt = req.method === 'GET' && (path === '/healthz' || path === '/readyz' || path.startsWith('/.well-known/'));
    // undefined: not looked at yet; null: the request carries no credential that verifies
    let credential: string | null | undefined;
    if (!exempt) {
      const addressBlocked = byAddress.check(clientKey, false).blocked;
      if (addressBlocked || byCredential.mayBlock()) {
        credential = await credentialOf(writ, req, path);
        if (credential !== null) {
          // a valid credential answers for its own failures only, never for its address's
          if (await refuseLimited(res, req, byCredential, byCredential.check(credential), credentialData(credential))) return;
        } else if (addressBlocked) {
          if (await refuseLimited(res, req, byAddress, byAddress.check(clientKey), { remote_address: client, ...(clientKey !== client ? { counted_as: clientKey } : {}) })) return;
        }
      }
    }
    try {
      // a URL that does not parse throws here, as before
      url = parsedUrl ?? new URL(req.url ?? '/', 'http://writ.invalid');
      const path = url.pathname;
      let allowed: string[] = [];
      for (const r of routes) {
        const m = r.pattern.exec(path);
        if (!m) continue;
        if (r.method !== req.method) {
          allowed.push(r.method);
          continue;
        }
        oauth = r.oauth ?? false;
        routeName = r.path;
        nameServerSpan(r.method, r.path);
        const params = m.slice(1).map(decodePathParam);
        await r.handler({ req, res, params, url });
        return;
      }
      if (allowed.length > 0) {
        allowed = [...new Set(allowed)];
        res.setHeader('allow', allowed.join(', '));
        throw new WritError('method_not_allowed', `method \`${req.method}\` is not allowed here`, 405);
      }
      throw new NotFoundError(`no route for \`${path.slice(0, 200)}\``);
    } catch (err) {
      // credential failures, refusals and replays count against the credential when the
      // request carries a valid one, otherwise against the client's address
      if (!exempt && err instanceof WritError && (err.status === 401 || err.status === 403 || err.status === 409 || (oauth && err.status === 400))) {
        if (credential === undefined) credential = await credentialOf(writ, req, path);
        if (credential !== null) byCredential.recordFailure(credential);
        else byAddress.recordFailure(clientKey);
      }
      if (err instanceof WritError && err.code.startsWith('store_')) writ.metrics.storeErrors.inc();
      sendError(res, err, oauth, (e) => log('request failed', e));
      // A body we did not read would be left in the socket; drain or close.
      if (!req.complete) req.resume();
    }
  }
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/** The registry in the Prometheus text format (version 0.0.4). */
export async function sendMetrics(res: ServerResponse, writ: Writ): Promise<void> {
  const body = await writ.metrics.registry.metrics();
  res.writeHead(200, { 'content-type': writ.metrics.registry.contentType, 'cache-control': 'no-store' });
  res.end(body);
}

/** The request's URL as routes see it; null when it does not parse (the route answers that). */
function parseUrl(raw: string | undefined): URL | null {
  try {
    return new URL(raw ?? '/', 'http://writ.invalid');
  } catch {
    return null;
  }
}

/** A malformed percent-encoding (`%E0%A4%A`) is the client's fault: 400, not a URIError and a 500. */
function decodePathParam(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    throw new InvalidRequestError('the path holds a malformed percent-encoding');
  }
}

/**
 * The API on node:http, or on node:https with `tls` (`writ serve --tls-cert/--tls-key`):
 * the same handler and drain either way (an https.Server is a tls.Server with the
 * http.Server's request handling and connection methods).
 */
export function createHttpServer(writ: Writ, options: HttpServerOptions & { tls?: { cert: string | Buffer; key: string | Buffer } } = {}): Server {
  const handler = createHttpHandler(writ, options);
  const drain = options.drain;
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    drain?.track(res);
    void handler(req, res);
  };
  const timeouts = { keepAliveTimeout: 5000, requestTimeout: 30_000, headersTimeout: 10_000 };
  if (options.tls) return createHttpsServer({ ...timeouts, cert: options.tls.cert, key: options.tls.key }, listener) as unknown as Server;
  return createServer(timeouts, listener);
}

/**
 * The version an `If-Match` names (RFC 9110 §13.1.1: an entity-tag, `"v"`; a bare `v`
 * is taken too; a weak `W/"v"` never matches). `*` is no condition (some version is
 * active: always true here). A list of several is refused: a policy change names the
 * one version it was made from.
 */
export function parseIfMatch(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const raw = (Array.isArray(header) ? header.join(',') : header).trim();
  if (raw === '*') return undefined;
  const tags = raw.split(',').map((t) => t.trim());
  if (tags.length !== 1) throw new InvalidRequestError('`If-Match` takes exactly one policy version', undefined, 'invalid_if_match');
  const m = /^(W\/)?"([^"]*)"$/.exec(tags[0]!) ?? /^()([A-Za-z0-9_-]+)$/.exec(tags[0]!);
  if (!m || !m[2] || m[2].length > 128) throw new InvalidRequestError('`If-Match` is not a policy version (`"<version>"`)', undefined, 'invalid_if_match');
  // If-Match compares strongly (§8.8.3.2): a weak tag matches no version, so 412
  return m[1] ? `W/${m[2]}` : m[2];
}
