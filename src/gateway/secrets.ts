import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from './config.js';
import { secretForms } from './secret-forms.js';

/**
 * A configured value: a literal string (treated as public: never put a secret here),
 * or a reference resolved at startup to a secret: `{"env": "NAME"}` reads an
 * environment variable, `{"file": "path"}` a file (trailing newline removed; relative
 * to the configuration file). `prefix` is prepended (`"Bearer "`).
 */
export type ValueRef = string | { env: string; prefix?: string } | { file: string; prefix?: string };

/**
 * The environment `{"env": NAME}` references are read from. The gateway never reads
 * the process's own: the CLI (the edge, src/cli/gateway.ts) passes it in, and a caller
 * that passes none gets none (a reference is then unset, and the gateway does not start).
 */
export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * A reference that cannot be resolved, or a secret the gateway cannot protect. A
 * configuration error: the gateway does not start. The message names the reference,
 * never a value.
 */
export class SecretResolutionError extends ConfigError {
  constructor(message: string) {
    super(message);
    this.name = 'SecretResolutionError';
  }
}

/**
 * Secrets shorter than this are refused at start: a short value cannot be redacted
 * reliably (masking it would mangle ordinary text, not masking it would leak it), so
 * the gateway would either corrupt what it returns or hand the credential out.
 */
export const MIN_SECRET_LENGTH = 8;
export const REDACTED = '[redacted]';

/**
 * Every secret value the gateway holds. Whatever the gateway sends to an agent (tool
 * results, errors, tool lists) or writes to its log passes through `redact`, so an
 * upstream that echoes its credential cannot hand it to the agent.
 */
export class Redactor {
  private secrets: string[] = [];
  /** every form masked: the secrets and their common transforms (see secretForms), longest first */
  private forms: string[] = [];
  private serialized: string[] = [];

  /** Adds a secret; one shorter than `MIN_SECRET_LENGTH` is a configuration error. */
  add(value: string, label: string): void {
    if (value.length < MIN_SECRET_LENGTH) throw shortSecret(label);
    if (this.secrets.includes(value)) return;
    this.secrets.push(value);
    const all = new Set([...this.forms, ...secretForms(value, MIN_SECRET_LENGTH)]);
    // longest first, so a form containing another is replaced whole
    this.forms = [...all].sort((a, b) => b.length - a.length);
    // what each form looks like inside a serialized JSON string (for redactDeep's quick check)
    this.serialized = [...new Set([...this.forms, ...this.forms.map((f) => JSON.stringify(f).slice(1, -1))])];
  }

  /** the secret values as configured */
  values(): readonly string[] {
    return this.secrets;
  }

  /** what is masked: each secret and its common transforms (base64, percent, JSON, hex), longest first */
  patterns(): readonly string[] {
    return this.forms;
  }

  get size(): number {
    return this.secrets.length;
  }

  /** True when `text` contains any secret, in any of its masked forms. */
  leaks(text: string): boolean {
    for (const s of this.forms) if (text.includes(s)) return true;
    return false;
  }

  redact(text: string): string {
    let out = text;
    for (const s of this.forms) if (out.includes(s)) out = out.split(s).join(REDACTED);
    return out;
  }

  /**
   * Redacts every string (and object key) in a JSON value. Cheap when nothing leaks:
   * one serialization and a substring search per secret.
   */
  redactDeep<T>(value: T): T {
    if (this.secrets.length === 0) return value;
    let text: string;
    try {
      text = JSON.stringify(value);
    } catch {
      // not serializable (a BigInt, a cycle): walk it rather than pass it unchecked
      return this.walk(value) as T;
    }
    if (text === undefined || !this.serialized.some((f) => text.includes(f))) return value;
    return this.walk(value) as T;
  }

  private walk(v: unknown): unknown {
    if (typeof v === 'string') return this.redact(v);
    if (Array.isArray(v)) return v.map((x) => this.walk(x));
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[this.redact(k)] = this.walk(x);
      return out;
    }
    return v;
  }
}

function shortSecret(what: string): SecretResolutionError {
  return new SecretResolutionError(
    `${what}: the secret is shorter than ${MIN_SECRET_LENGTH} characters; a secret this short cannot be redacted reliably from what the gateway returns and logs, so the gateway does not start (use a longer credential)`,
  );
}

/**
 * Resolves a value reference. Secrets (env and file references) are added to the
 * redactor; literal strings are not.
 */
export function resolveValue(ref: ValueRef, ctx: { baseDir: string; redactor: Redactor; what: string; env: Environment }): string {
  if (typeof ref === 'string') return ref;
  let value: string;
  if ('env' in ref) {
    const v = ctx.env[ref.env];
    if (v === undefined || v === '') throw new SecretResolutionError(`${ctx.what}: environment variable \`${ref.env}\` is not set`);
    value = v;
  } else {
    const path = isAbsolute(ref.file) ? ref.file : resolve(ctx.baseDir, ref.file);
    try {
      value = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new SecretResolutionError(`${ctx.what}: cannot read \`${path}\` (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (value === '') throw new SecretResolutionError(`${ctx.what}: \`${path}\` is empty`);
  }
  if (/[\r\n\0]/.test(value)) throw new SecretResolutionError(`${ctx.what}: the value contains a line break or NUL`);
  if (value.length < MIN_SECRET_LENGTH) throw shortSecret(ctx.what);
  ctx.redactor.add(value, ctx.what);
  const full = (ref.prefix ?? '') + value;
  if (ref.prefix) ctx.redactor.add(full, ctx.what);
  return full;
}

/** Resolves a map of references (headers, environment). */
export function resolveValues(refs: Record<string, ValueRef> | undefined, ctx: { baseDir: string; redactor: Redactor; what: string; env: Environment }): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, ref] of Object.entries(refs ?? {})) out[k] = resolveValue(ref, { ...ctx, what: `${ctx.what} \`${k}\`` });
  return out;
}
