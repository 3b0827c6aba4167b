import { authenticateTaskRequest } from './task-auth.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Writ } from '../service/writ.js';
import { bearer, readJson, sendJson } from './http-io.js';
import { createTaskSchema, parse, taskView } from '../wire/index.js';

export type RouteHandler = (ctx: { req: IncomingMessage; res: ServerResponse; params: string[]; url: URL }) => Promise<void>;
export type AddRoute = (method: string, path: string, handler: RouteHandler, oauth?: boolean) => void;

/**
 * `POST /v1/tasks/{id}/delegations` (the parent's task token): body as for
 * `POST /v1/tasks` (`agent_id`, `intent`, `scope`, `ttl_seconds`, `max_actions`);
 * 201 with the child task. Refusals: 403 `scope_not_subset`, `ttl_exceeds_parent`,
 * `budget_exceeds_parent`, `depth_exceeded`, `delegation_cycle`, `wrong_task`.
 */
export function registerDelegationRoutes(writ: Writ, route: AddRoute): void {
  route('POST', '/v1/tasks/{id}/delegations', async ({ req, res, params }) => {
    const holder = await authenticateTaskRequest(writ, req);
    const body = parse(createTaskSchema, await readJson(req));
    const child = await writ.tasks.delegate(holder, params[0]!, body);
    sendJson(res, 201, taskView(child));
  });
}
