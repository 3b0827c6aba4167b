/**
 * Writ SDK: the deliberate public surface for tool servers and agents.
 * It depends on jose and canonicalize only.
 */
export {
  ACTION_TOKEN_TYPE,
  ActionTokenError,
  argumentsDigest,
  consumeActionToken,
  createActionVerifier,
  type ActionClaims,
  type ActionTokenErrorCode,
  type ActionVerifierOptions,
} from './verify-action-token.js';
