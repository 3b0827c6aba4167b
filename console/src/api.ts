/**
 * The console's one way to the server: `/console/api/...` with the session cookie (sent by
 * the browser, never readable here) and, on every state change, the session's CSRF token.
 */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly details?: unknown) {
    super(message);
  }
}

let csrf = '';
let onSignedOut: () => void = () => undefined;

export function setCsrf(token: string): void {
  csrf = token;
}
export function whenSignedOut(fn: () => void): void {
  onSignedOut = fn;
}

export interface ApiResult<T = any> {
  body: T;
  headers: Headers;
}

export async function call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResult<T>> {
  const h: Record<string, string> = { accept: 'application/json', ...headers };
  if (body !== undefined) h['content-type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') h['x-writ-csrf'] = csrf;
  const res = await fetch(`/console/api${path}`, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
  const text = await res.text();
  let json: any = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { text };
  }
  if (!res.ok) {
    const e = json?.error ?? {};
    const err = new ApiError(res.status, String(e.code ?? `http_${res.status}`), String(e.message ?? res.statusText), e.details);
    if (res.status === 401 && path !== '/session') onSignedOut();
    throw err;
  }
  return { body: json as T, headers: res.headers };
}

export const get = <T = any>(path: string) => call<T>('GET', path).then((r) => r.body);
export const post = <T = any>(path: string, body: unknown = {}) => call<T>('POST', path, body).then((r) => r.body);

/** `?a=1&b=2` from the fields that are set. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
