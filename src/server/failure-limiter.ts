import { WindowLimiter } from '../core/window-limiter.js';

/**
 * Limits failed requests (bad credentials, replays, refusals). Failures cost an audit
 * entry each; without a bound an unauthenticated client could grow the audit chain and
 * force commits at will. Two limits, kept apart (`request-credential.ts`):
 * - per client address (`WRIT_FAILURE_LIMIT`), for requests without a valid credential;
 * - per credential (`WRIT_CREDENTIAL_FAILURE_LIMIT`), for requests that carry one.
 * Over its limit, an address or a credential gets 429 until its window ends, and one
 * audit entry records that it was limited (not one per request).
 */
export class FailureLimiter extends WindowLimiter {
  /** Counts one failure against `key`. */
  recordFailure(key: string): void {
    this.record(key);
  }
}
