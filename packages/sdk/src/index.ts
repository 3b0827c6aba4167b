/**
 * Writ SDK: the deliberate public surface for tool servers and agents, and the one client
 * for Writ's HTTP API. It depends on jose and canonicalize only (and node builtins).
 */
export {
  ACTION_TOKEN_TYPE,
  ActionTokenError,
  argumentsDigest,
  consumeActionToken,
  createActionVerifier,
  type ActionClaims,
  type ActionTokenErrorCode,
  type ActionVerifierOptions,
} from './verify-action-token.js';
export { ACTION_TOKEN_HEADER, httpActionArguments, InvalidQueryError, isJsonContentType, parseQuery, queryObject, type HttpActionArguments, type QueryObject, type QueryValue } from './http-action.js';
export { canonicalPath, encodePath, InvalidPathError } from './http-path.js';
export {
  ActionRefusedError,
  createActionGuard,
  createHttpActionGuard,
  MCP_ACTION_TOKEN_META,
  withActionToken,
  writHttpMiddleware,
  type ActionGuardOptions,
  type GuardedRequest,
  type HttpGuardOptions,
  type McpHandlerExtra,
} from './tool-middleware.js';
export { DpopKey, DpopNonces, dpopProof, sendWithDpop, type DpopAlgorithm, type DpopProofInput, type DpopResponse } from './dpop.js';
export { WritApiError, WritClient, type ApiCall, type ApiResponse, type WritClientOptions } from './api-client.js';
export {
  CLIENT_ASSERTION_TYPE,
  WritAgentClient,
  type ActionInput,
  type AgentClientOptions,
  type AgentKeyInput,
  type ApprovalResponse,
  type AuthorizeResponse,
} from './agent-client.js';
