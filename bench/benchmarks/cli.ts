import { REPO_ROOT } from '../lib/runtime.js';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { summarize } from '../lib/stats.js';
import { atMost, type BenchOutput, type RunOptions } from '../lib/types.js';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/writ.js', import.meta.url));

/** Wall time (ms) and peak RSS (KB) of one process, as GNU time reports them, or by timing when it is absent. */
async function once(args: string[]): Promise<{ ms: number; rssKb: number | null }> {
  const t = performance.now();
  try {
    const { stderr } = await run('/usr/bin/time', ['-f', '%M', process.execPath, ...args], { maxBuffer: 1 << 20 });
    return { ms: performance.now() - t, rssKb: Number(stderr.trim().split('\n').pop()) || null };
  } catch {
    await run(process.execPath, args);
    return { ms: performance.now() - t, rssKb: null };
  }
}

/**
 * CLI start-up: `writ --help` (the compiled CLI) against `node -e 0`, interleaved so that
 * both see the same machine; the target is a ratio of medians and a peak RSS.
 */
export async function cliStartup(opts: RunOptions): Promise<BenchOutput> {
  // bin/writ.js runs the source through tsx when dist/ is older than src/: build first so
  // that what is measured is the compiled CLI a user runs
  opts.log('cli_startup: npm run build');
  await run('npm', ['run', 'build'], { cwd: REPO_ROOT, maxBuffer: 16 << 20 });
  const n = opts.quick ? 10 : 40;
  const node: number[] = [];
  const writ: number[] = [];
  const rss: number[] = [];
  for (let i = 0; i < n; i++) {
    node.push((await once(['-e', '0'])).ms);
    const w = await once([BIN, '--help']);
    writ.push(w.ms);
    if (w.rssKb !== null) rss.push(w.rssKb);
  }
  const a = summarize(node);
  const b = summarize(writ);
  const ratio = Math.round((b.p50 / a.p50) * 100) / 100;
  const rssMb = rss.length ? Math.round((Math.max(...rss) / 1024) * 10) / 10 : null;
  return {
    result: { node_e0_ms: a, writ_help_ms: b, ratio_p50: ratio, writ_help_max_rss_mb: rssMb },
    targets: {
      'cli.help_vs_node_p50': { ...atMost('`writ --help` / `node -e 0` wall time p50', ratio, 2.5), figures: { writ_help_p50_ms: b.p50, node_e0_p50_ms: a.p50 } },
      ...(rssMb !== null ? { 'cli.help_rss_mb': atMost('`writ --help` peak RSS (MB)', rssMb, 60) } : {}),
    },
  };
}
