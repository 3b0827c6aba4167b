import type { Clock } from '../core/clock.js';
import type { DecisionCommitResult, DecisionWrite, OutcomeWrite, Store } from '../store/store.js';
import { GroupCommit } from './group-commit.js';

type Item = { decision: DecisionWrite } | { outcome: OutcomeWrite };
type Result = DecisionCommitResult | boolean | 'failed';

/**
 * Decisions, their audit entries and budget units, group-committed (see GroupCommit).
 * Reported outcomes ride along: an outcome waits (up to `lingerMs`) for the next batch of
 * decisions and is written in its transaction, so reporting one costs no durable write
 * of its own and the next decision never waits behind it (issue 12, item 6).
 */
export class DecisionCommitter {
  private readonly group: GroupCommit<Item, Result>;

  /** @param onCommitted sees each committed batch of decisions (metrics: its size, and what was decided) */
  constructor(store: Store, clock: Clock, maxBatch = 256, onCommitted?: (items: DecisionWrite[], results: DecisionCommitResult[]) => void, lingerMs = 50) {
    this.group = new GroupCommit<Item, Result>(
      async (items) => {
        const decisions: DecisionWrite[] = [];
        const outcomes: OutcomeWrite[] = [];
        for (const i of items) if ('decision' in i) decisions.push(i.decision);
        else outcomes.push(i.outcome);
        const now = clock.now();
        const r = outcomes.length === 0 ? { decisions: await store.commitDecisions(decisions, now), outcomes: [] } : await store.commitWrites(decisions, outcomes, now);
        if (decisions.length > 0) onCommitted?.(decisions, r.decisions);
        let d = 0;
        let o = 0;
        return items.map((i) => ('decision' in i ? r.decisions[d++]! : r.outcomes[o++]!));
      },
      maxBatch,
      lingerMs,
    );
  }

  submit(item: DecisionWrite): Promise<DecisionCommitResult> {
    return this.group.submit({ decision: item }) as Promise<DecisionCommitResult>;
  }

  /** Sets an outcome with the next batch: true set, false one was already recorded, 'failed' not written. */
  submitOutcome(item: OutcomeWrite): Promise<boolean | 'failed'> {
    return this.group.submit({ outcome: item }, { lazy: true }) as Promise<boolean | 'failed'>;
  }

  /** Resolves once every submitted item is committed (or failed). */
  drain(): Promise<void> {
    return this.group.drain();
  }
}
