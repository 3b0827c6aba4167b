import { sendWithDpop, WritApiError, WritClient, type DpopKey } from '@writ/sdk';
import { formatDiagnostic, type PolicyDiagnostic } from '../policy/diagnostics.js';
import { WritError, type ErrorCode } from '../core/errors.js';
import { flag, UsageError, type ParsedArgs } from './args.js';

export const DEFAULT_URL = 'http://127.0.0.1:8080';
/** Options every command that talks to the server takes. */
export const CONNECTION = ['url', 'token'];
const TIMEOUT_MS = 30_000;

/** A failure reported by the CLI; `notes` are printed on stderr after the error line. */
export class CliError extends WritError {
  readonly notes: string[];
  constructor(code: string, message: string, options: { status?: number; notes?: string[]; details?: unknown } = {}) {
    // the server's code, or one of the CLI's own (`connection_failed`, …): not an API code
    super(code as ErrorCode, message, options.status ?? 0, { details: options.details, expose: true });
    this.notes = options.notes ?? [];
  }
}

export function baseUrl(args: ParsedArgs): string {
  const fromFlag = flag(args, 'url');
  const raw = fromFlag ?? process.env.WRIT_URL ?? DEFAULT_URL;
  const where = fromFlag !== undefined ? '`--url`' : 'WRIT_URL';
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`${where} is not a URL: \`${raw}\``);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`${where} must be an http or https URL`);
  if (u.search || u.hash) throw new UsageError(`${where} must not have a query or fragment`);
  return raw.replace(/\/+$/, '');
}

export function operatorToken(args: ParsedArgs): string {
  const t = flag(args, 'token') ?? process.env.WRIT_TOKEN;
  if (!t) throw new UsageError('an operator token is required: `--token TOKEN` or WRIT_TOKEN');
  return t;
}

export interface RequestOptions {
  token?: string;
  json?: unknown;
  form?: Record<string, string>;
  query?: Record<string, string | number | undefined>;
  headers?: { 'if-match'?: string };
}

/** One path segment, escaped (agent ids such as SPIFFE ids carry slashes). */
export function seg(s: string): string {
  return encodeURIComponent(s);
}

/**
 * Calls the API through the SDK's client (no redirects followed, 30 s timeout); answers the
 * parsed JSON body or throws a CliError with the server's code.
 */
export async function request(base: string, method: string, path: string, opts: RequestOptions = {}): Promise<any> {
  try {
    return await new WritClient({ url: base, timeoutMs: TIMEOUT_MS }).request({ method, path, ...opts });
  } catch (err) {
    throw cliErrorOf(err);
  }
}

function cliErrorOf(err: unknown): unknown {
  if (!(err instanceof WritApiError)) return err;
  // the CLI's own codes for the transport failures: `timeout`, `connection_failed`
  if (err.code === 'unreachable') return new CliError('connection_failed', err.message);
  return new CliError(err.code, err.message, { status: err.status, details: err.details, notes: notesFrom(err.details) });
}

/**
 * `request` with a DPoP proof (RFC 9449) by `key` for Writ's URL of the path (its issuer,
 * from its metadata), bound to `opts.token` when given; sent once more with Writ's nonce
 * when it asks for one (§8, §9). `body(attempt)` builds each attempt's form (a client
 * assertion is single-use, so a retry needs a new one).
 */
export async function requestDpop(base: string, key: DpopKey, method: string, path: string, opts: { token?: string; json?: unknown; form?: (attempt: number) => Promise<Record<string, string>> }): Promise<any> {
  const meta = await request(base, 'GET', '/.well-known/oauth-authorization-server');
  if (typeof meta?.issuer !== 'string') throw new CliError('bad_response', 'the server metadata names no `issuer`');
  const client = new WritClient({ url: base, timeoutMs: TIMEOUT_MS });
  let attempt = 0;
  try {
    const r = await sendWithDpop(key, { method, url: `${meta.issuer}${path}`, accessToken: opts.token }, async (dpop) =>
      client.send({ method, path, token: opts.token, json: opts.json, form: opts.form ? await opts.form(attempt++) : undefined, dpop }),
    );
    if (r.status >= 200 && r.status < 300 && r.body !== undefined) return r.body;
    const e = r.body?.error;
    if (e && typeof e === 'object' && typeof e.code === 'string') throw new CliError(e.code, String(e.message ?? `${method} ${path} answered ${r.status}`), { status: r.status, details: e.details, notes: notesFrom(e.details) });
    if (typeof e === 'string') throw new CliError(e, String(r.body.error_description ?? `${method} ${path} answered ${r.status}`), { status: r.status });
    throw new CliError(`http_${r.status}`, `${method} ${path} answered ${r.status}`, { status: r.status });
  } catch (err) {
    throw cliErrorOf(err);
  }
}

/**
 * Calls the API for a body that is not JSON (a proof file, an export stream); errors are
 * mapped as by `request`. The caller reads the body.
 */
export async function requestRaw(base: string, path: string, opts: { token?: string; query?: Record<string, string | number | undefined>; timeoutMs?: number } = {}): Promise<Response> {
  const url = new URL(base + path);
  for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let res: Response;
  try {
    res = await fetch(url, { headers, redirect: 'manual', ...(opts.timeoutMs ? { signal: AbortSignal.timeout(opts.timeoutMs) } : {}) });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    throw new CliError('connection_failed', `cannot reach ${base}: ${e.cause?.code ?? e.cause?.message ?? e.message}`);
  }
  if (res.status >= 300 && res.status < 400) throw new CliError('unexpected_redirect', `GET ${path} answered ${res.status} (redirects are not followed)`, { status: res.status });
  if (!res.ok) {
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    throw errorFrom(res.status, parsed, `GET ${path}`);
  }
  return res;
}

/** Maps `{error: {code, message, details}}` and the OAuth `{error, error_description}`. */
function errorFrom(status: number, body: unknown, what: string): CliError {
  const b = (body ?? {}) as { error?: unknown; error_description?: unknown };
  if (b.error && typeof b.error === 'object') {
    const e = b.error as { code?: unknown; message?: unknown; details?: unknown };
    const code = typeof e.code === 'string' ? e.code : `http_${status}`;
    const message = typeof e.message === 'string' ? e.message : `${what} failed with status ${status}`;
    return new CliError(code, message, { status, details: e.details, notes: notesFrom(e.details) });
  }
  if (typeof b.error === 'string') {
    const message = typeof b.error_description === 'string' ? b.error_description : `${what} failed with status ${status}`;
    return new CliError(b.error, message, { status });
  }
  return new CliError(`http_${status}`, `${what} failed with status ${status}`, { status });
}

/** Cedar diagnostics and validation issues, one line each. */
function notesFrom(details: unknown): string[] {
  if (!details || typeof details !== 'object') return [];
  const d = details as { diagnostics?: unknown; issues?: unknown };
  const out: string[] = [];
  if (Array.isArray(d.diagnostics)) {
    // as a compiler prints them: `<policy>:line:col: error: ...`, the line, a caret
    for (const x of d.diagnostics as Partial<PolicyDiagnostic>[]) {
      if (typeof x?.message !== 'string') continue;
      const diagnostic: PolicyDiagnostic = { severity: x.severity ?? 'error', policy_id: x.policy_id ?? null, message: x.message, help: x.help ?? null, line: x.line ?? null, column: x.column ?? null, excerpt: x.excerpt ?? null };
      out.push(formatDiagnostic(diagnostic, '<policy>'));
    }
  }
  if (Array.isArray(d.issues) && d.issues.length > 1) {
    for (const x of d.issues as { path?: string; message?: string }[]) out.push(`  ${x.path ? `\`${x.path}\`: ` : ''}${x.message ?? ''}`);
  }
  return out;
}

export function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
