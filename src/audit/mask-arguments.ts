/**
 * What a decision's audit entry keeps of the arguments (WRIT_AUDIT_ARGS):
 *   full    the canonical arguments as asked
 *   masked  (default) the same, with values under secret-looking keys, and at the
 *           configured paths, replaced by "[masked]"
 *   digest  nothing but `args_digest`
 * The digest is always kept and always covers the arguments as asked: masking never
 * changes it, so an investigator holding the real arguments can still prove them.
 */
export type AuditArgsMode = 'full' | 'masked' | 'digest';

export interface MaskRule {
  /** tool name pattern, `*` matches any run of characters */
  tool: string;
  /** `tool`, compiled once (decisions call auditArguments on the authorize path) */
  toolRe: RegExp;
  /** dot path into the arguments; `*` matches any one key or array index */
  path: string[];
}

export const MASKED = '[masked]';

/** Keys whose values are masked wherever they appear (case-insensitive, `-`/`_` ignored). */
const SECRET_KEY = /^(?:pass(?:word|wd|phrase)?|secret|.*secret|token|.*token|apikey|.*apikey|authorization|auth|credentials?|privatekey|.*privatekey|cookie|setcookie|session|sessionid|ssn|cardnumber|cvv|cvc|pin|otp|mfacode)$/;

function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key.toLowerCase().replace(/[-_\s]/g, ''));
}

function toolPattern(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

/** Parses WRIT_AUDIT_MASK: `tool-pattern:dot.path` entries separated by commas. */
export function parseMaskRules(text: string | undefined): MaskRule[] {
  if (!text) return [];
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const at = entry.lastIndexOf(':');
      if (at <= 0 || at === entry.length - 1) throw new TypeError(`WRIT_AUDIT_MASK: \`${entry}\` is not \`tool-pattern:path\``);
      const path = entry.slice(at + 1).replace(/^\$\.?/, '').split('.');
      if (path.some((p) => p === '')) throw new TypeError(`WRIT_AUDIT_MASK: \`${entry}\` has an empty path segment`);
      const tool = entry.slice(0, at);
      return { tool, toolRe: toolPattern(tool), path };
    });
}

export function parseAuditArgsMode(text: string | undefined): AuditArgsMode {
  if (text === undefined || text === '') return 'masked';
  if (text === 'full' || text === 'masked' || text === 'digest') return text;
  throw new TypeError(`WRIT_AUDIT_ARGS is full, masked or digest, not \`${text}\``);
}

/** The arguments as the audit entry keeps them, or undefined in `digest` mode. */
export function auditArguments(args: Record<string, unknown>, tool: string, mode: AuditArgsMode, rules: readonly MaskRule[]): Record<string, unknown> | undefined {
  if (mode === 'digest') return undefined;
  if (mode === 'full') return args;
  const paths = rules.filter((r) => r.toolRe.test(tool)).map((r) => r.path);
  return maskValue(args, paths, 0) as Record<string, unknown>;
}

function maskValue(value: unknown, paths: string[][], depth: number): unknown {
  if (depth > 64) return MASKED;
  if (Array.isArray(value)) {
    return value.map((v, i) => {
      const sub = descend(paths, String(i));
      return sub.hit ? MASKED : maskValue(v, sub.rest, depth + 1);
    });
  }
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const sub = descend(paths, k);
      out[k] = sub.hit || isSecretKey(k) ? MASKED : maskValue(v, sub.rest, depth + 1);
    }
    return out;
  }
  return value;
}

function descend(paths: string[][], key: string): { hit: boolean; rest: string[][] } {
  let hit = false;
  const rest: string[][] = [];
  for (const p of paths) {
    if (p[0] !== key && p[0] !== '*') continue;
    if (p.length === 1) hit = true;
    else rest.push(p.slice(1));
  }
  return { hit, rest };
}
