/** JOSE `typ` values (RFC 8725 §3.11: explicit typing keeps one kind from passing as another). */
export const TASK_TOKEN_TYP = 'writ-task+jwt';
export const ACTION_TOKEN_TYP = 'writ-action+jwt';

/** Task tokens live minutes; never longer than 15 minutes, never past the task. */
export const MAX_TASK_TOKEN_TTL_SECONDS = 900;
/** Action tokens live seconds; at most 60. */
export const MAX_ACTION_TOKEN_TTL_SECONDS = 60;

export interface TaskTokenClaims {
  iss: string;
  sub: string;
  aud: string;
  iat: number;
  exp: number;
  jti: string;
  txn: string;
}

export interface ActionTokenClaims {
  iss: string;
  sub: string;
  aud: string;
  iat: number;
  exp: number;
  jti: string;
  txn: string;
  decision_id: string;
  tool: string;
  args_digest: string;
  resource?: string;
  destination?: string;
  act?: Record<string, unknown>;
  approval_id?: string;
  break_glass?: true;
}

/** Who presents a verified task token: its agent and task, and how the token is bound. */
export interface TaskPrincipal {
  agentId: string;
  taskId: string;
  tokenExp: number;
  /** the token's `jti` */
  jti?: string;
  /** `fed`: the trusted issuer record the token was obtained through (token exchange), else absent */
  issuerId?: string;
  /** `cnf.jkt` (RFC 9449 §6.1): the token is bound to this key; every use needs a proof from it */
  jkt?: string;
}
