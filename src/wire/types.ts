import type { z } from 'zod';
import type * as req from './requests.js';
import type * as res from './responses.js';

/** The TypeScript types of the wire, inferred from the schemas (input: as sent; output: as parsed). */
export type RegisterAgentRequest = z.input<typeof req.registerAgentSchema>;
export type CreateTaskRequest = z.input<typeof req.createTaskSchema>;
export type TaskScopeInput = z.input<typeof req.scopeSchema>;
export type AuthorizeRequest = z.input<typeof req.authorizeSchema>;
export type ParsedAuthorizeRequest = z.output<typeof req.authorizeSchema>;
export type ConsumeRequest = z.input<typeof req.consumeSchema>;
export type OutcomeRequest = z.input<typeof req.outcomeSchema>;
export type VisibleToolsRequest = z.input<typeof req.visibleToolsSchema>;

export type ErrorResponse = z.output<typeof res.errorResponseSchema>;
export type AuthorizeResponse = z.output<typeof res.authorizeResponseSchema>;
export type ApprovalResponse = z.output<typeof res.approvalResponseSchema>;
export type CurrentTaskResponse = z.output<typeof res.currentTaskResponseSchema>;
export type VisibleToolsResponse = z.output<typeof res.visibleToolsResponseSchema>;
export type TokenResponse = z.output<typeof res.tokenResponseSchema>;
export type ActionClaims = z.output<typeof res.actionClaimsSchema>;
