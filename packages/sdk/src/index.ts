/**
 * Writ SDK: the deliberate public surface for tool servers and agents.
 * It depends on jose and canonicalize only.
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
export {
  CLIENT_ASSERTION_TYPE,
  WritAgentClient,
  WritApiError,
  type ActionInput,
  type AgentClientOptions,
  type AgentKeyInput,
  type ApprovalResponse,
  type AuthorizeResponse,
} from './agent-client.js';
