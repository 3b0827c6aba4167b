/**
 * Summarizes a V8 `.cpuprofile` (node --cpu-prof): self time by function and by
 * package, and the inclusive time of the functions matching a pattern. For reading where
 * a process spends its CPU during a benchmark (bench/gateway.ts with BENCH_CPU_PROF_DIR).
 *
 *   node --import tsx bench/lib/cpu-profile-top.ts FILE.cpuprofile [--top N] [--match REGEX]
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function where(url: string): string {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  const s = /\/(src|bench|packages)\/(.*)$/.exec(url);
  if (s) return `${s[1]}/${s[2]}`;
  return url.replace(/^node:/, 'node:') || '(native)';
}

function label(n: Node): string {
  const f = n.callFrame;
  return `${f.functionName || '(anonymous)'} ${where(f.url)}:${f.lineNumber + 1}:${f.columnNumber + 1}`;
}

const argv = process.argv.slice(2);
const file = argv[0];
if (!file) {
  console.error('usage: cpu-profile-top.ts FILE.cpuprofile [--top N] [--match REGEX]');
  process.exit(2);
}
const opt = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const top = Number(opt('--top') ?? 40);
const match = opt('--match');
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
// `--from-ms T`: only the samples T ms or more after the profile's start (leave out loading and start-up)
const fromUs = Number(opt('--from-ms') ?? 0) * 1000;
const self = new Map<number, number>();
const perSecond: number[] = [];
let at = p.startTime;
for (let i = 0; i < p.samples.length; i++) {
  at += p.timeDeltas[i] ?? 0;
  if (at - p.startTime < fromUs) continue;
  const us = p.timeDeltas[i] ?? 0;
  self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + us);
  if (byId.get(p.samples[i]!)!.callFrame.functionName !== '(idle)') {
    const s = Math.floor((at - p.startTime) / 1e6);
    perSecond[s] = (perSecond[s] ?? 0) + us;
  }
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const idle = [...self.entries()].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((a, [, v]) => a + v, 0);
const busy = total - idle;
const pct = (us: number) => `${((us / busy) * 100).toFixed(1)}%`.padStart(6);
console.log(`${file}: ${(total / 1000).toFixed(0)} ms sampled, ${(busy / 1000).toFixed(0)} ms busy`);
console.log(`busy ms by second: ${perSecond.map((us, s) => `${s}:${Math.round((us ?? 0) / 1000)}`).join(' ')}`);

const selfBy = (key: (n: Node) => string) => {
  const m = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    if (n.callFrame.functionName === '(idle)') continue;
    m.set(key(n), (m.get(key(n)) ?? 0) + us);
  }
  return [...m.entries()].sort((a, b) => b[1] - a[1]);
};
console.log('\nself time by package/file:');
for (const [k, us] of selfBy((n) => where(n.callFrame.url)).slice(0, 25)) console.log(`${pct(us)} ${(us / 1000).toFixed(1).padStart(8)} ms  ${k}`);
console.log('\nself time by function:');
for (const [k, us] of selfBy(label).slice(0, top)) console.log(`${pct(us)} ${(us / 1000).toFixed(1).padStart(8)} ms  ${k}`);

if (match) {
  // inclusive: each sample counted once per matching function on its stack
  const re = new RegExp(match);
  const incl = new Map<string, number>();
  for (const [id, us] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur)!);
      if (re.test(l) && !seen.has(l)) {
        seen.add(l);
        incl.set(l, (incl.get(l) ?? 0) + us);
      }
    }
  }
  console.log(`\ninclusive time of functions matching /${match}/:`);
  for (const [k, us] of [...incl.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)} ${(us / 1000).toFixed(1).padStart(8)} ms  ${k}`);
}
