import { z } from 'zod';
import { WRIT_VERSION } from '../core/version.js';
import * as a from './audit-evidence.js';
import * as e from './escalations.js';
import * as f from './federation.js';
import * as ps from './policy-shadow.js';
import * as az from './authzen.js';
import * as c from './console.js';
import * as q from './requests.js';
import * as r from './responses.js';

/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the wire schemas
 * (`npm run openapi` writes docs/openapi.json; the server answers `GET /openapi.json`).
 * `test/openapi.test.ts` fails when the committed file drifts, or when a route the server
 * registers is missing here.
 */

/** `console`: the console's session cookie (`writ_console`); a change also carries `X-Writ-CSRF` and a same-origin `Origin` */
/** `agent`: a client assertion signed by the agent's key, its `aud` the route's URL (src/service/agent-tasks.ts) */
type Auth = 'none' | 'task' | 'operator' | 'client' | 'console' | 'agent';
interface Operation {
  summary: string;
  auth: Auth;
  body?: z.ZodType;
  /** `form`: application/x-www-form-urlencoded (the OAuth endpoints) */
  form?: z.ZodType;
  query?: z.ZodObject;
  response?: z.ZodType;
  /** errors in the OAuth shape (RFC 6749 §5.2) without a form body */
  oauth?: true;
}

/** Every route of the server: `METHOD path` → what it takes and answers. */
export const API_ROUTES: Record<string, Operation> = {
  'GET /healthz': { summary: 'liveness', auth: 'none' },
  'GET /readyz': { summary: 'readiness (the store answers)', auth: 'none' },
  'GET /openapi.json': { summary: 'this document', auth: 'none' },
  'GET /metrics': { summary: 'Prometheus metrics (text exposition; auditor, or WRIT_METRICS_TOKEN)', auth: 'operator' },
  'GET /.well-known/jwks.json': { summary: 'token signing keys (JWK Set)', auth: 'none' },
  'GET /.well-known/oauth-authorization-server': { summary: 'RFC 8414 metadata', auth: 'none' },
  'GET /.well-known/writ-audit-key': { summary: 'the audit checkpoint key (JWK Set)', auth: 'none' },
  'GET /.well-known/authzen-configuration': { summary: 'AuthZEN PDP metadata', auth: 'none', response: az.authzenConfigurationSchema },
  'POST /access/v1/evaluation': {
    summary: 'AuthZEN Access Evaluation (one decision, as POST /v1/authorize)', auth: 'task', body: az.authzenEvaluationSchema, response: az.authzenDecisionSchema,
  },
  'POST /access/v1/evaluations': {
    summary: 'AuthZEN Access Evaluations (several, three semantics)', auth: 'task', body: az.authzenEvaluationsSchema, response: az.authzenEvaluationsResponseSchema,
  },
  'GET /oauth/authorize': { summary: 'no authorization endpoint flow: always 400 `unsupported_response_type` (named in the metadata for stock OAuth clients)', auth: 'none', oauth: true },
  'POST /oauth/authorize': { summary: 'as GET: always 400 `unsupported_response_type`', auth: 'none', oauth: true },
  'POST /oauth/token': { summary: 'task token (client assertion, RFC 7523) or token exchange (RFC 8693)', auth: 'client', form: q.tokenFormSchema, response: r.tokenResponseSchema },
  'POST /oauth/introspect': { summary: 'RFC 7662 introspection', auth: 'operator', form: q.introspectFormSchema },
  'POST /v1/authorize': { summary: 'decide one action', auth: 'task', body: q.authorizeSchema, response: r.authorizeResponseSchema },
  'GET /v1/tasks/current': { summary: 'the task token’s own task', auth: 'task', response: r.currentTaskResponseSchema },
  'POST /v1/tools/visible': { summary: 'which of these tools this task could be allowed to call', auth: 'task', body: q.visibleToolsSchema, response: r.visibleToolsResponseSchema },
  'POST /v1/actions/consume': { summary: 'a tool server burns an action token', auth: 'none', body: q.consumeSchema },
  'POST /v1/actions/{id}/outcome': { summary: 'report an allowed action’s outcome (written with the next decisions; `Prefer: respond-async`: 202 once queued)', auth: 'task', body: q.outcomeSchema },
  'POST /v1/actions/outcomes': {
    summary: 'report up to 256 outcomes of the task’s allowed actions at once: 202 once each is checked and queued, `outcomes` answering each in order (`{decision_id, status}` or `{decision_id, error}`)', auth: 'task', body: q.outcomesSchema,
  },
  'POST /v1/tasks/{id}/complete': { summary: 'complete the task', auth: 'task' },
  'POST /v1/operators': { summary: 'create an operator', auth: 'operator', body: q.createOperatorSchema },
  'GET /v1/operators': { summary: 'list operators', auth: 'operator' },
  'POST /v1/operators/{id}/disable': { summary: 'disable an operator', auth: 'operator', body: q.noFieldsSchema },
  'POST /v1/operators/{id}/rotate': { summary: 'rotate an operator token', auth: 'operator', body: q.noFieldsSchema },
  'POST /v1/agents': { summary: 'register an agent', auth: 'operator', body: q.registerAgentSchema },
  'GET /v1/agents': { summary: 'list agents', auth: 'operator' },
  'GET /v1/agents/{id}': { summary: 'one agent', auth: 'operator' },
  'GET /v1/agents/{id}/tasks': {
    summary: 'the agent’s own active tasks (long-poll with `wait` and `If-None-Match`: 304 when unchanged)', auth: 'agent', query: q.agentTasksQuerySchema, response: r.agentTasksResponseSchema,
  },
  'POST /v1/agents/{id}/disable': { summary: 'disable an agent', auth: 'operator' },
  'POST /v1/tasks': { summary: 'create a task', auth: 'operator', body: q.createTaskSchema },
  'GET /v1/tasks': { summary: 'list tasks', auth: 'operator', query: q.taskQuerySchema },
  'GET /v1/tasks/{id}': { summary: 'one task', auth: 'operator' },
  'POST /v1/tasks/{id}/revoke': { summary: 'revoke a task', auth: 'operator', body: q.revokeSchema },
  'POST /v1/tasks/{id}/delegations': { summary: 'delegate a sub-task', auth: 'task', body: q.createTaskSchema },
  'GET /v1/tasks/{id}/presence': { summary: 'the owner’s presence lease', auth: 'operator' },
  'POST /v1/tasks/{id}/presence': { summary: 'renew the owner’s presence lease', auth: 'operator', body: e.presenceSchema },
  'GET /v1/policies': { summary: 'the active policy set and its history', auth: 'operator', query: q.policyQuerySchema },
  'PUT /v1/policies': {
    summary: 'replace the policy set (If-Match: "<version>"); with `mode=shadow`, set the shadow candidate instead (If-Match: the candidate\'s version)',
    auth: 'operator', body: q.policySchema, query: ps.putPolicyQuerySchema,
  },
  'GET /v1/policies/shadow': { summary: 'the shadow candidate and where its decisions differ from the live ones', auth: 'operator', query: ps.shadowReportQuerySchema, response: ps.shadowReportResponseSchema },
  'POST /v1/policies/shadow/promote': { summary: 'make the shadow candidate live (If-Match: the live version)', auth: 'operator', body: ps.promoteShadowSchema, response: ps.shadowPromoteResponseSchema },
  'DELETE /v1/policies/shadow': { summary: 'remove the shadow candidate (If-Match: its version)', auth: 'operator', response: ps.shadowDropResponseSchema },
  'GET /v1/policies/{version}': { summary: 'one policy version', auth: 'operator' },
  'POST /v1/policies/simulate': { summary: 'replay past decisions under a candidate set', auth: 'operator', body: q.simulatePolicySchema },
  'GET /v1/keys': { summary: 'signing keys', auth: 'operator' },
  'POST /v1/keys/rotate': { summary: 'rotate the signing key', auth: 'operator' },
  'GET /v1/tool-labels': { summary: 'tool labels', auth: 'operator' },
  'PUT /v1/tool-labels': { summary: 'label tools by pattern', auth: 'operator', body: q.toolLabelsSchema },
  'GET /v1/audit': { summary: 'audit entries', auth: 'operator', query: q.auditQuerySchema },
  'GET /v1/audit/verify': { summary: 'verify the audit chain', auth: 'operator' },
  'POST /v1/audit/verify': { summary: 'verify the chain against checkpoints', auth: 'operator', body: q.auditVerifySchema },
  'POST /v1/audit/checkpoints': { summary: 'sign a checkpoint', auth: 'operator' },
  'GET /v1/audit/checkpoint-key': { summary: 'the checkpoint key in note format', auth: 'operator' },
  'GET /v1/audit/checkpoint': { summary: 'the latest signed checkpoint', auth: 'operator' },
  'GET /v1/audit/checkpoints': { summary: 'signed checkpoints above a size', auth: 'operator', query: a.checkpointsQuerySchema },
  'GET /v1/audit/proofs/inclusion': { summary: 'RFC 9162 inclusion proof', auth: 'operator', query: a.inclusionQuerySchema },
  'GET /v1/audit/proofs/consistency': { summary: 'RFC 9162 consistency proof', auth: 'operator', query: a.consistencyQuerySchema },
  'GET /v1/audit/proof/{id}': { summary: 'a tlog-proof of one entry', auth: 'operator' },
  'GET /v1/audit/export': { summary: 'export entries (JSONL or OCSF)', auth: 'operator', query: a.exportQuerySchema },
  'GET /v1/audit/trace/{id}': { summary: 'trace a decision, action token or task', auth: 'operator', query: a.traceQuerySchema },
  'GET /v1/approvals': { summary: 'list approvals', auth: 'operator', query: e.approvalListQuerySchema },
  'GET /v1/approvals/{id}': { summary: 'one approval (an agent may long-poll with `wait`)', auth: 'task', query: e.approvalReadQuerySchema, response: r.approvalResponseSchema },
  'POST /v1/approvals/{id}/approve': { summary: 'approve', auth: 'operator', body: e.reviewSchema },
  'POST /v1/approvals/{id}/deny': { summary: 'deny', auth: 'operator', body: e.reviewSchema },
  'POST /v1/break-glass': { summary: 'start a break-glass', auth: 'operator', body: e.startBreakGlassSchema },
  'GET /v1/break-glass': { summary: 'list break-glass', auth: 'operator', query: e.breakGlassListQuerySchema },
  'GET /v1/break-glass/{id}': { summary: 'one break-glass', auth: 'operator' },
  'POST /v1/break-glass/{id}/confirm': { summary: 'confirm (a second admin)', auth: 'operator' },
  'POST /v1/break-glass/{id}/end': { summary: 'end a break-glass', auth: 'operator', body: e.endBreakGlassSchema },
  'POST /v1/break-glass/{id}/review': { summary: 'review an ended break-glass', auth: 'operator', body: e.reviewBreakGlassSchema },
  'POST /v1/issuers': { summary: 'trust an issuer', auth: 'operator', body: f.registerIssuerSchema },
  'GET /v1/issuers': { summary: 'trusted issuers', auth: 'operator' },
  'GET /v1/issuers/{id}': { summary: 'one trusted issuer', auth: 'operator' },
  'DELETE /v1/issuers/{id}': { summary: 'disable a trusted issuer', auth: 'operator', query: f.removeIssuerQuerySchema },
  // the operator console (README "Console"): its page and assets, its session, and the few
  // endpoints of its own; everything else it does goes through /console/api/v1/... to the API above
  'GET /console': { summary: 'the operator console (HTML page)', auth: 'none' },
  'GET /console/': { summary: 'the operator console (HTML page)', auth: 'none' },
  'GET /console/assets/{name}': { summary: 'the console’s bundled script and style (built by `npm run build`)', auth: 'none' },
  'POST /console/api/session': { summary: 'sign in to the console with an operator token (sets the HttpOnly session cookie; same-origin only)', auth: 'none', body: c.consoleSignInSchema },
  'GET /console/api/session': { summary: 'the signed-in operator and the session’s CSRF token', auth: 'console' },
  'DELETE /console/api/session': { summary: 'sign out (CSRF token and same origin required)', auth: 'console' },
  'GET /console/api/events': { summary: 'server-sent events: pending approvals and break-glass changed', auth: 'console', query: c.consoleEventsQuerySchema },
  'GET /console/api/audit': { summary: 'search the audit log by agent, task, tool, decision and time', auth: 'console', query: c.consoleAuditQuerySchema },
  'POST /console/api/policies/validate': { summary: 'validate a policy edit with diagnostics (CSRF token and same origin required)', auth: 'console', body: c.consoleValidatePolicySchema },
};

/**
 * The MCP gateway's own routes (`writ gateway mcp`, and `writ serve --gateway`): another
 * listener than Writ's API, so not among this document's paths, but named here with the
 * rest. `{path}` is the MCP endpoint's path (`listen.path`, default `/mcp`).
 * test/gateway-prm.test.ts checks that the gateway answers each.
 */
export const GATEWAY_ROUTES: Record<string, { summary: string; auth: 'none' | 'task' | 'metrics' }> = {
  'GET /.well-known/oauth-protected-resource': { summary: 'RFC 9728 protected resource metadata for the gateway\'s origin (names Writ as the authorization server)', auth: 'none' },
  'GET /.well-known/oauth-protected-resource{path}': { summary: 'RFC 9728 protected resource metadata for the MCP endpoint (the MCP authorization spec\'s discovery URL)', auth: 'none' },
  'POST {path}': { summary: 'MCP streamable HTTP (task token as Bearer, or DPoP with a proof)', auth: 'task' },
  'GET {path}': { summary: 'MCP streamable HTTP: the session\'s event stream', auth: 'task' },
  'DELETE {path}': { summary: 'MCP streamable HTTP: ends the session', auth: 'task' },
  'GET /metrics': { summary: 'Prometheus metrics (WRIT_METRICS_TOKEN only)', auth: 'metrics' },
};

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const s = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Record<string, unknown>;
  delete s.$schema;
  return s;
}

const SECURITY: Record<Auth, unknown[] | undefined> = {
  none: [],
  task: [{ taskToken: [] }],
  operator: [{ operatorToken: [] }],
  client: [],
  console: [{ consoleSession: [] }],
  agent: [{ agentAssertion: [] }],
};

/** The document, as `docs/openapi.json` holds it (stable key order: the route table's). */
export function buildOpenApi(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [key, op] of Object.entries(API_ROUTES)) {
    const [method, path] = key.split(' ') as [string, string];
    const parameters: unknown[] = [...path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    if (op.query) {
      const qs = jsonSchema(op.query, 'input') as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, schema] of Object.entries(qs.properties ?? {})) {
        parameters.push({ name, in: 'query', required: (qs.required ?? []).includes(name), schema });
      }
    }
    const content = op.body
      ? { 'application/json': { schema: jsonSchema(op.body, 'input') } }
      : op.form
        ? { 'application/x-www-form-urlencoded': { schema: jsonSchema(op.form, 'input') } }
        : undefined;
    const responses: Record<string, unknown> = {
      '200': { description: 'OK', content: { 'application/json': { schema: op.response ? jsonSchema(op.response, 'output') : { type: 'object' } } } },
      default: { description: 'an error (README "API errors")', content: { 'application/json': { schema: { $ref: op.form || op.oauth ? '#/components/schemas/OAuthError' : '#/components/schemas/Error' } } } },
    };
    paths[path] ??= {};
    paths[path]![method.toLowerCase()] = {
      summary: op.summary,
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(content ? { requestBody: { required: true, content } } : {}),
      responses,
      ...(SECURITY[op.auth] && SECURITY[op.auth]!.length > 0 ? { security: SECURITY[op.auth] } : {}),
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Writ', version: WRIT_VERSION, description: 'Task-scoped, per-action authorization for AI agents', license: { name: 'Apache-2.0', identifier: 'Apache-2.0' } },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    paths,
    components: {
      schemas: {
        Error: jsonSchema(r.errorResponseSchema, 'output'),
        OAuthError: jsonSchema(r.oauthErrorResponseSchema, 'output'),
        ActionClaims: jsonSchema(r.actionClaimsSchema, 'output'),
      },
      securitySchemes: {
        taskToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'a task token from POST /oauth/token' },
        operatorToken: { type: 'http', scheme: 'bearer', description: 'an operator token' },
        agentAssertion: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'an RFC 7523 client assertion signed by the agent’s key, `aud` the route’s URL under the issuer, used once' },
        consoleSession: { type: 'apiKey', in: 'cookie', name: 'writ_console', description: 'the console session from POST /console/api/session' },
      },
    },
  };
}
