import type { Clock } from '../core/clock.js';
import type { DecisionCommitResult, DecisionWrite, Store } from '../store/store.js';
import { GroupCommit } from './group-commit.js';

/** Decisions, their audit entries and budget units, group-committed (see GroupCommit). */
export class DecisionCommitter {
  private readonly group: GroupCommit<DecisionWrite, DecisionCommitResult>;

  /** @param onCommitted sees each committed batch (metrics: its size, and what was decided) */
  constructor(store: Store, clock: Clock, maxBatch = 256, onCommitted?: (items: DecisionWrite[], results: DecisionCommitResult[]) => void) {
    this.group = new GroupCommit(async (items) => {
      const results = await store.commitDecisions(items, clock.now());
      onCommitted?.(items, results);
      return results;
    }, maxBatch);
  }

  submit(item: DecisionWrite): Promise<DecisionCommitResult> {
    return this.group.submit(item);
  }

  /** Resolves once every submitted item is committed (or failed). */
  drain(): Promise<void> {
    return this.group.drain();
  }
}
