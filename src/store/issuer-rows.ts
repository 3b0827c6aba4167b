import type { IssuerRecord } from '../core/types.js';
import { json, type Row } from './rows.js';

/** Row <-> record mapping for `trusted_issuers` (both SQL backends; same columns). */
export function toIssuer(r: Row): IssuerRecord {
  return {
    id: r.id as string,
    kind: r.kind as IssuerRecord['kind'],
    issuer: r.issuer as string,
    audience: r.audience as string,
    jwks: r.jwks === null || r.jwks === undefined ? null : json(r.jwks),
    jwksUri: (r.jwks_uri as string | null) ?? null,
    rules: json(r.rules),
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
    JSON.stringify(i.rules),
    i.status,
    i.createdAt,
    i.createdBy,
    i.disabledAt,
  ];
}

