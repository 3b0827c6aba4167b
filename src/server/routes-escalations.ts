import { authenticateTaskRequest } from './task-auth.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ForbiddenError, UnauthorizedError } from '../core/errors.js';
import type { OperatorRecord } from '../core/types.js';
import type { Writ } from '../service/writ.js';
import { bearer, readJson, sendJson } from './http-io.js';
import { approvalListQuerySchema, approvalReadQuerySchema, breakGlassListQuerySchema, endBreakGlassSchema, parse, presenceSchema, reviewBreakGlassSchema, reviewSchema, startBreakGlassSchema } from '../wire/index.js';

/**
 * HTTP routes for approvals, break-glass and presence (design §4; README
 * "Approvals, break-glass and presence"). Registered by createHttpHandler.
 */

type Handler = (ctx: { req: IncomingMessage; res: ServerResponse; params: string[]; url: URL }) => Promise<void>;
type RouteFn = (method: string, path: string, handler: Handler) => void;

/** Aborts when the client goes away (a long-poll stops waiting for nobody). */
function clientGone(res: ServerResponse): AbortSignal {
  const ac = new AbortController();
  res.once('close', () => ac.abort());
  return ac.signal;
}

export function registerEscalationRoutes(writ: Writ, route: RouteFn, operator: (req: IncomingMessage) => Promise<OperatorRecord>): void {
  /** The operator behind the bearer, or null when the bearer is no operator token (it may be a task token). */
  const maybeOperator = async (token: string | null): Promise<OperatorRecord | null> => {
    try {
      return await writ.identity.authenticateOperator(token);
    } catch (err) {
      if (err instanceof UnauthorizedError) return null;
      throw err;
    }
  };

  /** An operator review; an agent presenting its task token is refused as self-approval. */
  const reviewer = async (req: IncomingMessage): Promise<OperatorRecord> => {
    const token = bearer(req);
    const op = await maybeOperator(token);
    if (op) return op;
    if (token) {
      const isAgent = await writ.tokens.verifyTaskToken(token).then(
        () => true,
        () => false,
      );
      if (isAgent) throw new ForbiddenError('an agent cannot approve actions: approvals need an operator with the `approver` role', 'self_approval');
    }
    return operator(req); // throws the usual 401
  };

  // --- approvals ---
  route('GET', '/v1/approvals', async ({ req, res, url }) => {
    const op = await operator(req);
    const q = parse(approvalListQuerySchema, Object.fromEntries(url.searchParams));
    sendJson(res, 200, { approvals: await writ.approvals.list(op, { status: q.status, taskId: q.task_id, limit: q.limit }) });
  });

  route('GET', '/v1/approvals/{id}', async ({ req, res, params, url }) => {
    const token = bearer(req);
    const q = parse(approvalReadQuerySchema, Object.fromEntries(url.searchParams));
    const op = await maybeOperator(token);
    if (op) {
      sendJson(res, 200, await writ.approvals.getForOperator(op, params[0]!, q.wait ?? 0, clientGone(res)));
      return;
    }
    const ctx = await authenticateTaskRequest(writ, req);
    sendJson(res, 200, await writ.approvals.readAsAgent(ctx, params[0]!, q.wait ?? 0, clientGone(res)));
  });

  for (const verdict of ['approve', 'deny'] as const) {
    route('POST', `/v1/approvals/{id}/${verdict}`, async ({ req, res, params }) => {
      const op = await reviewer(req);
      const body = parse(reviewSchema, await readJson(req, true));
      sendJson(res, 200, await writ.approvals.review(op, params[0]!, verdict, body.comment));
    });
  }

  // --- break-glass ---
  route('POST', '/v1/break-glass', async ({ req, res }) => {
    const op = await operator(req);
    const body = parse(startBreakGlassSchema, await readJson(req));
    const started = await writ.breakGlass.start(op, body);
    // Break-glass only widens what a policy grants under `context.break_glass`: say so
    // when the active policy has no such grant, rather than let the operator believe it works.
    const active = writ.policy.engine.activeOrNull();
    const warnings = active && !active.mentionsBreakGlass
      ? [{ code: 'policy_ignores_break_glass', message: 'the active policy never reads `context.break_glass`: this break-glass allows nothing more until a policy does' }]
      : [];
    sendJson(res, 201, warnings.length ? { ...started, warnings } : started);
  });
  route('GET', '/v1/break-glass', async ({ req, res, url }) => {
    const op = await operator(req);
    const q = parse(breakGlassListQuerySchema, Object.fromEntries(url.searchParams));
    sendJson(res, 200, { break_glass: await writ.breakGlass.list(op, { state: q.state, agentId: q.agent_id, limit: q.limit }) });
  });
  route('GET', '/v1/break-glass/{id}', async ({ req, res, params }) => {
    const op = await operator(req);
    sendJson(res, 200, await writ.breakGlass.get(op, params[0]!));
  });
  route('POST', '/v1/break-glass/{id}/confirm', async ({ req, res, params }) => {
    const op = await operator(req);
    await readJson(req, true);
    sendJson(res, 200, await writ.breakGlass.confirm(op, params[0]!));
  });
  route('POST', '/v1/break-glass/{id}/end', async ({ req, res, params }) => {
    const op = await operator(req);
    const body = parse(endBreakGlassSchema, await readJson(req, true));
    sendJson(res, 200, await writ.breakGlass.end(op, params[0]!, body.reason));
  });
  route('POST', '/v1/break-glass/{id}/review', async ({ req, res, params }) => {
    const op = await operator(req);
    const body = parse(reviewBreakGlassSchema, await readJson(req));
    sendJson(res, 200, await writ.breakGlass.review(op, params[0]!, body.notes));
  });

  // --- presence ---
  route('GET', '/v1/tasks/{id}/presence', async ({ req, res, params }) => {
    const op = await operator(req);
    sendJson(res, 200, await writ.presence.get(op, params[0]!));
  });
  route('POST', '/v1/tasks/{id}/presence', async ({ req, res, params }) => {
    const op = await operator(req);
    const body = parse(presenceSchema, await readJson(req, true));
    sendJson(res, 200, await writ.presence.renew(op, params[0]!, body.ttl_seconds ?? writ.config.presenceMaxTtlSeconds));
  });
}
