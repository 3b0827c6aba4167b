/**
 * The wire contract: the zod schema of every request (and the inferred types), the
 * error codes, and the OpenAPI document generated from them. The server, the gateway and
 * the CLI parse with these; `@writ/sdk` mirrors the types without zod (its test holds the
 * two together).
 */
export * from './requests.js';
export * from './authorize-body.js';
export * from './escalations.js';
export * from './federation.js';
export * from './audit-evidence.js';
export * from './console.js';
export * from './policy-shadow.js';
export * from './authzen.js';
export * from './responses.js';
export * from './types.js';
export * from './views.js';
export { buildOpenApi } from './openapi.js';
export { parse } from './parse.js';
export { ERROR_CODES, isErrorCode, type ErrorCode } from '../core/error-codes.js';
export * from './token-scope.js';
