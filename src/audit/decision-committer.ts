import type { Clock } from '../core/clock.js';
import type { DecisionCommitResult, DecisionWrite, Store } from '../store/store.js';
import { GroupCommit } from './group-commit.js';

/** Decisions, their audit entries and budget units, group-committed (see GroupCommit). */
export class DecisionCommitter {
  private readonly group: GroupCommit<DecisionWrite, DecisionCommitResult>;

  constructor(store: Store, clock: Clock, maxBatch = 256) {
    this.group = new GroupCommit((items) => store.commitDecisions(items, clock.now()), maxBatch);
  }

  submit(item: DecisionWrite): Promise<DecisionCommitResult> {
    return this.group.submit(item);
  }

  /** Resolves once every submitted item is committed (or failed). */
  drain(): Promise<void> {
    return this.group.drain();
  }
}
