import { createPublicKey } from 'node:crypto';
import { InvalidRequestError, type ErrorCode } from '../core/errors.js';
import type { ClaimValue, IssuerRecord, IssuerRule, Jwk } from '../core/types.js';
import { checkAgentId, parseSpiffeId, SpiffeIdError } from './spiffe-id.js';

/**
 * Trusted workload-identity issuers: what an operator registers, and how a verified
 * subject token's claims map to a registered agent.
 *
 * Two kinds:
 * - `oidc`: an OpenID Connect / JWT issuer (Kubernetes service-account tokens, CI
 *   workload tokens, cloud metadata tokens). `issuer` is the exact `iss` its tokens
 *   carry (an https URL; http only on loopback, for tests and local issuers).
 * - `spiffe`: a SPIFFE trust domain whose JWT-SVIDs are accepted. `issuer` is
 *   `spiffe://<trust domain>`; a JWT-SVID is matched to it by its `sub` (a SPIFFE ID
 *   in that trust domain), or by an `iss` equal to it. JWT-SVIDs are held to the
 *   SPIFFE JWT-SVID profile (algorithms, headers).
 */

/** Algorithms of OIDC workload tokens (RS256, ES256, EdDSA, PS256); HS*, `none` and the rest never. */
export const OIDC_ALGORITHMS = ['RS256', 'ES256', 'EdDSA', 'PS256'];
/** SPIFFE JWT-SVID §3: RS256/384/512, ES256/384/512, PS256/384/512. */
export const SVID_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'];

export const MAX_RULES = 100;
export const MAX_RULE_CLAIMS = 16;

export interface IssuerInput {
  issuer: string;
  kind?: 'oidc' | 'spiffe';
  audience: string;
  jwks?: { keys: Record<string, unknown>[] };
  jwks_uri?: string;
  rules: { claims: Record<string, ClaimValue>; agent_id: string }[];
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

function bad(message: string, code: ErrorCode = 'invalid_request'): InvalidRequestError {
  return new InvalidRequestError(message, undefined, code);
}

/** https, or http on a loopback host; no user info, no fragment. */
function checkUrl(raw: string, what: string, { query }: { query: boolean }): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw bad(`\`${what}\` is not a URL`);
  }
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && LOOPBACK.has(u.hostname))) {
    throw bad(`\`${what}\` must be an https URL (http only on a loopback host)`);
  }
  if (u.username || u.password) throw bad(`\`${what}\` must not carry user info`);
  if (raw.includes('#')) throw bad(`\`${what}\` must not have a fragment`);
  if (!query && raw.includes('?')) throw bad(`\`${what}\` must not have a query`);
  return u;
}

/** The trust domain of a `spiffe` issuer (`spiffe://acme.test` -> `acme.test`). */
export function trustDomainOf(issuer: IssuerRecord | string): string {
  const s = typeof issuer === 'string' ? issuer : issuer.issuer;
  return s.slice('spiffe://'.length);
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/**
 * Inline issuer keys: public RSA (>= 2048 bits), EC (P-256/384/521) or OKP (Ed25519)
 * keys for signatures, each parsed by node:crypto; nothing private or symmetric.
 */
export function checkIssuerJwks(jwks: { keys: Record<string, unknown>[] }, algorithms: string[]): { keys: Jwk[] } {
  if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) throw bad('`jwks.keys` must hold at least one key', 'invalid_jwks');
  if (jwks.keys.length > 20) throw bad('`jwks.keys` holds at most 20 keys', 'invalid_jwks');
  const keys = jwks.keys.map((k, i) => {
    if (PRIVATE_MEMBERS.some((m) => m in k)) throw bad(`key ${i} carries private or symmetric key material`, 'invalid_jwks');
    const kty = k.kty;
    const okType =
      (kty === 'RSA' && typeof k.n === 'string' && typeof k.e === 'string' && k.n.length >= 342) ||
      (kty === 'EC' && ['P-256', 'P-384', 'P-521'].includes(k.crv as string) && typeof k.x === 'string' && typeof k.y === 'string') ||
      (kty === 'OKP' && k.crv === 'Ed25519' && typeof k.x === 'string');
    if (!okType) throw bad(`key ${i} is not an RSA (>= 2048 bits), EC (P-256/384/521) or Ed25519 public key`, 'invalid_jwks');
    if (k.use !== undefined && k.use !== 'sig') throw bad(`key ${i} has \`use\` other than \`sig\``, 'invalid_jwks');
    if (k.alg !== undefined && !algorithms.includes(k.alg as string)) throw bad(`key ${i} has \`alg\` \`${String(k.alg)}\`, which is not accepted`, 'invalid_jwks');
    if (k.kid !== undefined && (typeof k.kid !== 'string' || k.kid.length > 256)) throw bad(`key ${i} has a bad \`kid\``, 'invalid_jwks');
    try {
      createPublicKey({ key: k as never, format: 'jwk' });
    } catch {
      throw bad(`key ${i} does not parse as a public key`, 'invalid_jwks');
    }
    return { ...k } as Jwk;
  });
  return { keys };
}

/** Validates an issuer registration and turns it into a record (without id and times). */
export function checkIssuerInput(input: IssuerInput): Omit<IssuerRecord, 'id' | 'createdAt' | 'createdBy' | 'status' | 'disabledAt'> {
  const kind = input.kind ?? (input.issuer.startsWith('spiffe://') ? 'spiffe' : 'oidc');
  if (kind === 'spiffe') {
    try {
      if (parseSpiffeId(input.issuer).path !== '') throw new SpiffeIdError('a trust domain has no path');
    } catch (err) {
      throw bad(`a \`spiffe\` issuer is \`spiffe://<trust domain>\`: ${(err as Error).message}`);
    }
  } else {
    if (input.issuer.startsWith('spiffe://')) throw bad('an `oidc` issuer is a URL; use `kind: "spiffe"` for a SPIFFE trust domain');
    checkUrl(input.issuer, 'issuer', { query: false });
  }
  if ((input.jwks === undefined) === (input.jwks_uri === undefined)) throw bad('give exactly one of `jwks` and `jwks_uri`');
  const algorithms = kind === 'spiffe' ? SVID_ALGORITHMS : OIDC_ALGORITHMS;
  const jwks = input.jwks ? checkIssuerJwks(input.jwks, algorithms) : null;
  const jwksUri = input.jwks_uri !== undefined ? checkUrl(input.jwks_uri, 'jwks_uri', { query: true }).href : null;
  if (input.rules.length === 0) throw bad('`rules` must hold at least one rule');
  if (input.rules.length > MAX_RULES) throw bad(`\`rules\` holds at most ${MAX_RULES} rules`);
  const seen = new Map<string, string>();
  const rules: IssuerRule[] = input.rules.map((r, i) => {
    const entries = Object.entries(r.claims);
    if (entries.length > MAX_RULE_CLAIMS) throw bad(`rule ${i} lists more than ${MAX_RULE_CLAIMS} claims`);
    const sub = r.claims.sub;
    if (typeof sub !== 'string' || sub.length === 0) throw bad(`rule ${i} must name the exact \`sub\` (a string)`);
    if (kind === 'spiffe') {
      let td: string;
      try {
        td = parseSpiffeId(sub).trustDomain;
      } catch (err) {
        throw bad(`rule ${i}: \`sub\` of a JWT-SVID is a SPIFFE ID: ${(err as Error).message}`);
      }
      if (td !== trustDomainOf(input.issuer)) throw bad(`rule ${i}: \`sub\` is not in trust domain \`${trustDomainOf(input.issuer)}\``);
    }
    const named = new Map<string, ClaimValue>();
    for (const [k, v] of entries) {
      if (typeof v === 'number' && !Number.isFinite(v)) throw bad(`rule ${i}: claim \`${k}\` must be a finite number`);
      let path: string[];
      try {
        path = claimPath(k);
      } catch (err) {
        throw bad(`rule ${i}: ${(err as Error).message}`);
      }
      // `sub` and `/sub` name one claim: listed twice, it is one condition or a contradiction
      const canonical = JSON.stringify(path);
      if (named.has(canonical)) throw bad(`rule ${i} names the claim \`${k}\` twice`);
      named.set(canonical, v);
    }
    checkAgentId(r.agent_id);
    const key = JSON.stringify([...named.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const prev = seen.get(key);
    if (prev !== undefined && prev !== r.agent_id) throw bad(`rules ${i} and an earlier one list the same claims for different agents`);
    seen.set(key, r.agent_id);
    return { claims: { ...r.claims }, agentId: r.agent_id };
  });
  return { kind, issuer: input.issuer, audience: input.audience, jwks, jwksUri, rules };
}

/**
 * The claim a rule's claim name denotes, as a path of object member names:
 *
 * - a name that does not start with `/` is a literal top-level claim name, exactly as
 *   written: `sub`, `repository`, `kubernetes.io`, `https://example.com/claims/role`
 *   (Auth0- and Okta-style custom claims are URLs). Dots and slashes in it are just
 *   characters, so a URL or a dotted name is never split.
 * - a name that starts with `/` is an RFC 6901 JSON Pointer into nested objects:
 *   `/kubernetes.io/namespace` reads `claims["kubernetes.io"]["namespace"]`; `~1` stands
 *   for `/` and `~0` for `~` inside a member name (§3), so `/https:~1~1example.com~1role`
 *   is the same claim as the literal `https://example.com/role`.
 *
 * The two forms never overlap: the first character decides, and nothing is guessed
 * from what a token happens to carry. A pointer with an empty member name (`//`, a
 * trailing `/`, `/` alone) or a `~` not followed by `0` or `1` is refused (§3, §4):
 * an empty name is never what an operator means, and a bad escape is a typo.
 * `.` and `..` are member names like any other (a pointer has no relative steps).
 */
export function claimPath(name: string): string[] {
  if (name.length === 0) throw new Error('a claim name is empty');
  if (!name.startsWith('/')) return [name];
  const segments = name.slice(1).split('/');
  return segments.map((seg) => {
    if (seg.length === 0) throw new Error(`claim pointer \`${name}\` has an empty member name (a literal claim name has no leading \`/\`)`);
    if (/~(?![01])/.test(seg)) throw new Error(`claim pointer \`${name}\` has a \`~\` that is not \`~0\` or \`~1\` (RFC 6901)`);
    return seg.replace(/~1/g, '/').replace(/~0/g, '~');
  });
}

/**
 * Reads the claim a rule names (see `claimPath`): own members of plain objects only;
 * lists are never entered (a pointer has no array indices here) and inherited members
 * (`__proto__`, `constructor`) are never found. Absent reads as `undefined`.
 */
export function readClaim(claims: Record<string, unknown>, name: string): unknown {
  let path: string[];
  try {
    path = claimPath(name);
  } catch {
    return undefined; // registration refuses such names; a stored one matches nothing
  }
  let cur: unknown = claims;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.hasOwn(cur, seg)) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/** Exact equality on every claim the rule lists: same type, same value; never a prefix, pattern or case fold. */
export function ruleMatches(rule: IssuerRule, claims: Record<string, unknown>): boolean {
  for (const [name, want] of Object.entries(rule.claims)) {
    const got = readClaim(claims, name);
    if (typeof got !== typeof want || got !== want) return false;
  }
  return true;
}

/** The distinct agents whose rules match: exactly one maps the token; none or several refuse it. */
export function matchAgents(issuer: IssuerRecord, claims: Record<string, unknown>): string[] {
  return [...new Set(issuer.rules.filter((r) => ruleMatches(r, claims)).map((r) => r.agentId))];
}

/** Wire shape of an issuer. */
export function issuerView(i: IssuerRecord) {
  return {
    id: i.id,
    kind: i.kind,
    issuer: i.issuer,
    audience: i.audience,
    jwks: i.jwks,
    jwks_uri: i.jwksUri,
    rules: i.rules.map((r) => ({ claims: r.claims, agent_id: r.agentId })),
    status: i.status,
    created_at: new Date(i.createdAt).toISOString(),
    created_by: i.createdBy,
    disabled_at: i.disabledAt === null ? null : new Date(i.disabledAt).toISOString(),
  };
}
