import { parseAuditArgsMode, parseMaskRules } from '../audit/mask-arguments.js';
import type { WritConfig } from '../service/config.js';
import { UsageError } from './args.js';

/** WRIT_AUDIT_ARGS (full | masked | digest, default masked) and WRIT_AUDIT_MASK (`tool:path,...`). */
export function auditConfigFromEnv(env: NodeJS.ProcessEnv): Partial<WritConfig> {
  try {
    return { auditArgs: parseAuditArgsMode(env.WRIT_AUDIT_ARGS), auditMaskRules: parseMaskRules(env.WRIT_AUDIT_MASK) };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
