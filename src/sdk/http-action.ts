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
  /** query parameters; a repeated name gives an array, in order */
  query: Record<string, string | string[]>;
  /** the parsed JSON body, when there is one */
  body?: unknown;
}

export function queryObject(search: URLSearchParams | string): Record<string, string | string[]> {
  const params = typeof search === 'string' ? new URLSearchParams(search) : search;
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of params) {
    const prev = out[k];
    if (prev === undefined) out[k] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else out[k] = [prev, v];
  }
  return out;
}

export function httpActionArguments(input: { method: string; path: string; search?: URLSearchParams | string; body?: unknown }): HttpActionArguments {
  const args: HttpActionArguments = { method: input.method.toUpperCase(), path: input.path, query: queryObject(input.search ?? '') };
  if (input.body !== undefined) args.body = input.body;
  return args;
}

/** `application/json`, `application/problem+json`, ...: bodies the proxy parses and shows to policy. */
export function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false;
  return /^application\/(?:[a-z0-9!#$&^_.-]+\+)?json\s*(?:;|$)/i.test(value.trim());
}
