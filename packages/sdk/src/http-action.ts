import { parseQuery, type QueryObject } from './http-query.js';
export { InvalidQueryError, parseQuery, type QueryObject, type QueryValue } from './http-query.js';

/**
 * The shape of an HTTP request as an action, shared by Writ's HTTP proxy (which asks
 * Writ with it) and a tool server's middleware (which checks the action token against
 * the request it actually received): both must build the same arguments, byte for
 * byte in canonical JSON, or the `args_digest` will not match.
 */

/** The header that carries an action token to a tool server. */
export const ACTION_TOKEN_HEADER = 'writ-action-token';

export interface HttpActionArguments {
  /** upper-case method */
  method: string;
  /** the path the tool server receives, without the query */
  path: string;
  /** query parameters as `parseQuery` reads them: a repeated name gives an array, in order; `name[]` an array; `name[key]` a map */
  query: QueryObject;
  /** the parsed JSON body, when there is a JSON body */
  body?: unknown;
  /**
   * any other body (form, text, bytes, ...): its SHA-256 (hex) and its `Content-Type`
   * as sent (absent when there is none), so the action token binds the exact bytes; an
   * empty body is no body (RFC 9112 §6.3: a request without a length has none)
   */
  body_sha256?: string;
  content_type?: string;
}

/** The query as an object (see `parseQuery`); throws `InvalidQueryError` for a query parsers read differently. */
export function queryObject(search: string): QueryObject {
  return parseQuery(search).query;
}

export function httpActionArguments(input: { method: string; path: string; search?: string; body?: unknown; bodySha256?: string; contentType?: string }): HttpActionArguments {
  const args: HttpActionArguments = { method: input.method.toUpperCase(), path: input.path, query: queryObject(input.search ?? '') };
  if (input.body !== undefined) args.body = input.body;
  if (input.bodySha256 !== undefined) {
    args.body_sha256 = input.bodySha256;
    if (input.contentType !== undefined && input.contentType.trim() !== '') args.content_type = input.contentType.trim();
  }
  return args;
}

/** `application/json`, `application/problem+json`, ...: bodies the proxy parses and shows to policy. */
export function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false;
  return /^application\/(?:[a-z0-9!#$&^_.-]+\+)?json\s*(?:;|$)/i.test(value.trim());
}
