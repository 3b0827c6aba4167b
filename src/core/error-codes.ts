/**
 * Every error `code` the API answers with, in one list. `WritError` takes only these, so a
 * new code is added here first; `test/error-codes.test.ts` holds the README's "API errors"
 * tables to this list (each code in both, nothing in one only). Deny reasons are not errors
 * (a deny answers 200) and are not listed here.
 */
export const ERROR_CODES = [
  // 400
  'invalid_request',
  'invalid_json',
  'invalid_jwks',
  'invalid_agent_id',
  'invalid_checkpoint',
  'invalid_if_match',
  'invalid_policy',
  'invalid_path',
  'invalid_query',
  'policy_too_complex',
  'invalid_destination',
  'invalid_resource',
  'reserved_argument_key',
  'scope_too_large',
  'too_many_tools',
  'size_beyond_log',
  // AuthZEN (the PDP routes)
  'unsupported_subject_type',
  'unsupported_action',
  'unsupported_resource_type',
  'invalid_request_id',
  // 400/401 OAuth (RFC 6749 §5.2)
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  // 401
  'unauthorized',
  'invalid_token',
  'token_expired',
  'task_not_active',
  'agent_disabled',
  'issuer_removed',
  'operator_disabled',
  'wrong_audience',
  // RFC 9449 DPoP (400 at the token endpoint, 401 elsewhere)
  'invalid_dpop_proof',
  'use_dpop_nonce',
  // 403
  'forbidden',
  'insufficient_role',
  // the console (/console): a state change without its session's CSRF token, or from another origin
  'csrf_token_invalid',
  'origin_not_allowed',
  'wrong_task',
  'subject_mismatch',
  'self_approval',
  'same_admin',
  'not_task_owner',
  'delegation_cycle',
  'depth_exceeded',
  'scope_not_subset',
  'ttl_exceeds_parent',
  'budget_exceeds_parent',
  // 404
  'not_found',
  'agent_not_found',
  'task_not_found',
  'decision_not_found',
  'operator_not_found',
  'policy_version_not_found',
  'shadow_not_found',
  'issuer_not_found',
  'entry_not_found',
  'checkpoint_not_found',
  'approval_not_found',
  'break_glass_not_found',
  // 405
  'method_not_allowed',
  // 409
  'conflict',
  'audit_empty',
  'not_allowed_decision',
  'parent_budget_exhausted',
  'issuer_not_active',
  'agent_exists',
  'issuer_exists',
  'last_admin',
  'token_already_used',
  'outcome_already_reported',
  'approval_not_pending',
  'already_reviewed',
  'break_glass_active',
  'break_glass_cap_exceeded',
  'break_glass_not_active',
  'break_glass_not_pending',
  'presence_not_required',
  'shadow_matches_live',
  // 412
  'precondition_failed',
  'policy_version_mismatch',
  // 413, 415, 429
  'payload_too_large',
  'unsupported_media_type',
  'rate_limited',
  'approval_limit',
  // 5xx
  'internal_error',
  'unsupported_transfer_coding',
  'upstream_unsupported_encoding',
  'store_unavailable',
  'policy_unavailable',
  'temporarily_unavailable',
  'console_not_built',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

const known: ReadonlySet<string> = new Set(ERROR_CODES);

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && known.has(value);
}
