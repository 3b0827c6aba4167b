import type { FederatedTokenRecord, IssuerRecord, IssuerRule } from '../core/types.js';
import { json, type Row } from './rows.js';

/**
 * Each stored rule carries `names: 2`: its claim names are literal names or JSON
 * Pointers (src/identity/issuers.ts `claimPath`). A rule without it was written
 * before, when `a/b` meant "literal, else nested"; it is read as the pointer `/a/b`.
 * (An older instance reading a new rule finds no claim `/a/b` and matches nothing:
 * it fails closed during a rolling upgrade.)
 */
const RULE_NAMES_VERSION = 2;

/**
 * A legacy name holding `/` becomes the pointer to the nested path: what the
 * documentation of that time gave as the example (`kubernetes.io/namespace`); names
 * with an empty segment, so every URL, were refused then.
 */
export function upgradeLegacyClaimName(name: string): string {
  if (!name.includes('/')) return name;
  return '/' + name.split('/').map((seg) => seg.replace(/~/g, '~0')).join('/');
}

function toRules(raw: unknown): IssuerRule[] {
  return (json(raw) as (IssuerRule & { names?: number })[]).map(({ names, ...rule }) =>
    names === RULE_NAMES_VERSION
      ? rule
      : { ...rule, claims: Object.fromEntries(Object.entries(rule.claims).map(([k, v]) => [upgradeLegacyClaimName(k), v])) },
  );
}

/** Row <-> record mapping for `trusted_issuers` (both SQL backends; same columns). */
export function toIssuer(r: Row): IssuerRecord {
  return {
    id: r.id as string,
    kind: r.kind as IssuerRecord['kind'],
    issuer: r.issuer as string,
    audience: r.audience as string,
    jwks: r.jwks === null || r.jwks === undefined ? null : json(r.jwks),
    jwksUri: (r.jwks_uri as string | null) ?? null,
    rules: toRules(r.rules),
    status: r.status as IssuerRecord['status'],
    createdAt: Number(r.created_at),
    createdBy: r.created_by as string,
    disabledAt: r.disabled_at === null || r.disabled_at === undefined ? null : Number(r.disabled_at),
  };
}

/** Values for `INSERT INTO trusted_issuers (ISSUER_COLUMNS)`, in that order. */
export const ISSUER_COLUMNS = 'id, kind, issuer, audience, jwks, jwks_uri, rules, status, created_at, created_by, disabled_at';

export function issuerParams(i: IssuerRecord): unknown[] {
  return [
    i.id,
    i.kind,
    i.issuer,
    i.audience,
    i.jwks === null ? null : JSON.stringify(i.jwks),
    i.jwksUri,
    JSON.stringify(i.rules.map((r) => ({ ...r, names: RULE_NAMES_VERSION }))),
    i.status,
    i.createdAt,
    i.createdBy,
    i.disabledAt,
  ];
}


/** Row -> record for `federated_tokens`. */
export function toFederatedToken(r: Row): FederatedTokenRecord {
  return {
    jti: r.jti as string,
    issuerId: r.issuer_id as string,
    agentId: r.agent_id as string,
    taskId: r.task_id as string,
    issuedAt: Number(r.issued_at),
    expiresAt: Number(r.expires_at),
    revokedAt: r.revoked_at === null || r.revoked_at === undefined ? null : Number(r.revoked_at),
  };
}

export const FEDERATED_TOKEN_COLUMNS = 'jti, issuer_id, agent_id, task_id, issued_at, expires_at, revoked_at';

export function federatedTokenParams(t: FederatedTokenRecord): unknown[] {
  return [t.jti, t.issuerId, t.agentId, t.taskId, t.issuedAt, t.expiresAt, t.revokedAt];
}
