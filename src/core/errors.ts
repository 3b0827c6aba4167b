import type { ErrorCode } from './error-codes.js';

export { ERROR_CODES, isErrorCode, type ErrorCode } from './error-codes.js';

/**
 * The error model. Every failure that crosses a boundary is one of these classes,
 * with a stable snake_case `code` and the HTTP status it maps to. `expose` is true
 * only for client faults: the server never shows the message of a fault it caused.
 */
export class WritError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly expose: boolean;
  readonly details?: unknown;

  constructor(code: ErrorCode, message: string, status: number, options: { expose?: boolean; details?: unknown; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.expose = options.expose ?? status < 500;
    this.details = options.details;
  }
}

/** 400: the request is malformed, has unknown fields or fails validation. */
export class InvalidRequestError extends WritError {
  constructor(message: string, details?: unknown, code: ErrorCode = 'invalid_request') {
    super(code, message, 400, { details });
  }
}

/** 401: no credentials, or credentials that do not verify. */
export class UnauthorizedError extends WritError {
  constructor(message = 'authentication required', code: ErrorCode = 'unauthorized') {
    super(code, message, 401);
  }
}

/** 403: authenticated, but not allowed to do this. */
export class ForbiddenError extends WritError {
  constructor(message: string, code: ErrorCode = 'forbidden') {
    super(code, message, 403);
  }
}

export class NotFoundError extends WritError {
  constructor(message: string, code: ErrorCode = 'not_found') {
    super(code, message, 404);
  }
}

export class ConflictError extends WritError {
  constructor(message: string, code: ErrorCode = 'conflict') {
    super(code, message, 409);
  }
}

/** 412: a conditional request (`If-Match`, RFC 9110 §13.1.1) whose condition is false. */
export class PreconditionFailedError extends WritError {
  constructor(message: string, code: ErrorCode = 'precondition_failed') {
    super(code, message, 412);
  }
}

export class PayloadTooLargeError extends WritError {
  constructor(message = 'request body is larger than the limit') {
    super('payload_too_large', message, 413);
  }
}

export class UnsupportedMediaTypeError extends WritError {
  constructor(message: string) {
    super('unsupported_media_type', message, 415);
  }
}

/** 429: slow down; `retryAfterSeconds` becomes the `Retry-After` header (RFC 9110 §10.2.3). */
export class RateLimitedError extends WritError {
  readonly retryAfterSeconds: number;

  constructor(message = 'too many requests', options: { retryAfterSeconds?: number; code?: ErrorCode } = {}) {
    super(options.code ?? 'rate_limited', message, 429);
    this.retryAfterSeconds = Math.max(1, Math.ceil(options.retryAfterSeconds ?? 10));
  }
}

/** 503: a dependency (the store) is unreachable. Fail closed, retry later. */
export class UnavailableError extends WritError {
  constructor(message = 'the store is unavailable', cause?: unknown, code: ErrorCode = 'store_unavailable') {
    super(code, message, 503, { expose: true, cause });
  }
}

/** 500: a fault of ours. The message is logged, never shown. */
export class InternalError extends WritError {
  constructor(message = 'internal error', cause?: unknown) {
    super('internal_error', message, 500, { expose: false, cause });
  }
}

/**
 * OAuth endpoints answer in the RFC 6749 §5.2 shape `{error, error_description}`.
 */
export class OAuthError extends WritError {
  constructor(
    error: 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unauthorized_client' | 'unsupported_grant_type' | 'invalid_scope' | 'invalid_target' | 'unsupported_response_type',
    description: string,
    status?: number,
  ) {
    super(error, description, status ?? (error === 'invalid_client' ? 401 : 400));
  }
}

export function isWritError(err: unknown): err is WritError {
  return err instanceof WritError;
}
