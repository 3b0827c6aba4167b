import type { AuditInput } from '../core/types.js';
import type { Store } from '../store/store.js';
import { GroupCommit } from './group-commit.js';

/**
 * Audit entries that are not decisions (security events such as a refused
 * credential), group-committed: a burst of bad requests costs one commit, not one each.
 */
export class AuditBatcher {
  private readonly group: GroupCommit<AuditInput, void>;

  constructor(store: Store, maxBatch = 256) {
    this.group = new GroupCommit<AuditInput, void>(async (entries) => {
      await store.appendAudit(entries);
      return entries.map((): void => undefined);
    }, maxBatch);
  }

  append(entry: AuditInput): Promise<void> {
    return this.group.submit(entry);
  }

  /** Resolves once every submitted item is committed (or failed). */
  drain(): Promise<void> {
    return this.group.drain();
  }
}
