import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { freshData, type Backend } from '../lib/backend.js';
import { ACTIONS_PER_TASK, makeTasks, registerAgent, startInProcess } from '../lib/fixture.js';
import { benchAction, BENCH_AGENT, BENCH_SCOPE, POLICIES_20 } from '../lib/policies.js';
import { ratio, round, timeConcurrent } from '../lib/stats.js';
import { atMost, type BenchOutput, type RunOptions } from '../lib/types.js';

/** A full garbage collection, so RSS reflects what is held and not what is merely uncollected. */
function collect(): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  return () => {
    gc();
    gc();
  };
}

const MB = 1024 * 1024;

/**
 * Memory under a long run (issue 12, item 8): RSS after 1,000,000 in-process decisions
 * at most 1.2x RSS after 10,000, both after a full collection, in one process on one
 * store. Decisions run at concurrency 32 (group commit) so the million takes minutes, not
 * a quarter of an hour; `--quick` compares 10,000 with 100,000.
 */
export async function memory(opts: RunOptions, backend: Backend): Promise<BenchOutput> {
  const early = 10_000;
  const total = opts.quick ? 100_000 : 1_000_000;
  const data = freshData(backend, opts.dataRoot);
  const ip = await startInProcess(data.spec, POLICIES_20);
  const gc = collect();
  try {
    const { writ } = ip;
    const agent = await registerAgent(ip, BENCH_AGENT);
    const ctxs = await makeTasks(ip, agent.id, BENCH_SCOPE, total + 1000);
    let used = 0;
    const outcomes = { allow: 0, deny: 0, approval_required: 0 };
    const authorize = async (i: number) => {
      outcomes[(await writ.authz.authorize(ctxs[Math.floor(used++ / ACTIONS_PER_TASK)]!, benchAction(i))).decision] += 1;
    };
    const snap = () => {
      gc();
      const m = process.memoryUsage();
      return { rss_mb: round(m.rss / MB), heap_used_mb: round(m.heapUsed / MB), external_mb: round(m.external / MB), array_buffers_mb: round(m.arrayBuffers / MB) };
    };
    const start = snap();
    const t0 = performance.now();
    await timeConcurrent(early, 32, authorize);
    const atEarly = { decisions: early, ...snap() };
    const marks = [atEarly];
    let done = early;
    const step = total / 10;
    while (done < total) {
      const n = Math.min(step - (done % step || 0) || step, total - done);
      await timeConcurrent(n, 32, authorize);
      done += n;
      marks.push({ decisions: done, ...snap() });
      opts.log(`memory[${backend}]: ${done} decisions, rss ${marks.at(-1)!.rss_mb} MB (after ${early}: ${atEarly.rss_mb} MB)`);
    }
    const elapsedS = (performance.now() - t0) / 1000;
    const last = marks.at(-1)!;
    const r = ratio(last.rss_mb, atEarly.rss_mb);
    return {
      result: {
        params: { backend, concurrency: 32, early, total, policies: 20 },
        at_start: start,
        marks,
        outcomes,
        decisions_per_s: Math.round(total / elapsedS),
        ratio_rss_total_vs_early: r,
        note: 'RSS after a full collection (gc twice), one process, one store; marks every tenth of the run',
      },
      targets: {
        [`memory.${backend}.rss_vs_early`]: {
          ...atMost(`RSS after ${total.toLocaleString('en')} in-process decisions / RSS after ${early.toLocaleString('en')}`, r, 1.2),
          figures: { [`rss_after_${total}_mb`]: last.rss_mb, [`rss_after_${early}_mb`]: atEarly.rss_mb },
        },
      },
    };
  } finally {
    await ip.close();
    await data.destroy();
  }
}
