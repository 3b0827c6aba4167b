import type { Store } from '../../src/store/store.js';

export interface CommitStats {
  /** transactions (batches) committed */
  commits: number;
  /** decisions in them */
  decisions: number;
  mean_batch: number;
  max_batch: number;
  /** wall time inside commitDecisions, per commit (SQLite: the event loop is blocked all along) */
  mean_commit_us: number;
}

/**
 * Wraps `store.commitDecisions` (on this instance only; no source file changes) to
 * count group-commit batches and the time spent committing them. `take()` returns
 * what happened since the previous call.
 */
export function probeCommits(store: Store): { take: () => CommitStats } {
  let commits = 0;
  let decisions = 0;
  let max = 0;
  let us = 0;
  const original = store.commitDecisions.bind(store);
  store.commitDecisions = async (items, now) => {
    const t0 = performance.now();
    try {
      return await original(items, now);
    } finally {
      us += (performance.now() - t0) * 1000;
      commits += 1;
      decisions += items.length;
      if (items.length > max) max = items.length;
    }
  };
  return {
    take: () => {
      const s: CommitStats = {
        commits,
        decisions,
        mean_batch: commits ? Math.round((decisions / commits) * 10) / 10 : 0,
        max_batch: max,
        mean_commit_us: commits ? Math.round((us / commits) * 10) / 10 : 0,
      };
      commits = 0;
      decisions = 0;
      max = 0;
      us = 0;
      return s;
    },
  };
}
