import { WritError } from '../core/errors.js';
import { flag, UsageError, type ParsedArgs } from './args.js';

export const DEFAULT_URL = 'http://127.0.0.1:8080';
/** Options every command that talks to the server takes. */
export const CONNECTION = ['url', 'token'];
const TIMEOUT_MS = 30_000;

/** A failure reported by the CLI; `notes` are printed on stderr after the error line. */
export class CliError extends WritError {
  readonly notes: string[];
  constructor(code: string, message: string, options: { status?: number; notes?: string[]; details?: unknown } = {}) {
    super(code, message, options.status ?? 0, { details: options.details, expose: true });
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
}

/** One path segment, escaped (agent ids such as SPIFFE ids carry slashes). */
export function seg(s: string): string {
  return encodeURIComponent(s);
}

/** Calls the API; answers the parsed JSON body or throws a CliError with the server's code. */
export async function request(base: string, method: string, path: string, opts: RequestOptions = {}): Promise<any> {
  const url = new URL(base + path);
  for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(opts.form).toString();
  } else if (opts.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  let res: Response;
  try {
    // never follow a redirect: it could carry the bearer token somewhere else
    res = await fetch(url, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    if (e.name === 'TimeoutError') throw new CliError('timeout', `${base} did not answer within ${TIMEOUT_MS / 1000} s`);
    throw new CliError('connection_failed', `cannot reach ${base}: ${e.cause?.code ?? e.cause?.message ?? e.message}`);
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (res.status >= 300 && res.status < 400) {
    throw new CliError('unexpected_redirect', `${method} ${path} answered ${res.status} (redirects are not followed)`, { status: res.status });
  }
  if (!res.ok) throw errorFrom(res.status, parsed, `${method} ${path}`);
  if (parsed === undefined) throw new CliError('bad_response', `${method} ${path} answered ${res.status} without a JSON body`, { status: res.status });
  return parsed;
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
    for (const x of d.diagnostics as { policy_id?: string | null; message?: string; help?: string | null }[]) {
      // Cedar's validation messages already name the policy
      const where = x.policy_id && !x.message?.includes(`policy \`${x.policy_id}\``) ? `policy \`${x.policy_id}\`: ` : '';
      out.push(`  ${where}${x.message ?? JSON.stringify(x)}${x.help ? ` (help: ${x.help})` : ''}`);
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
