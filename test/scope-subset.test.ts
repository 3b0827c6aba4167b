import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { matchPattern } from '../src/core/scope.js';
import { SCOPE_LIMITS, scopeBoundsProblem, starCount } from '../src/core/scope-limits.js';
import { isScopeSubset, patternIncludes, scopeExcess, scopeExcessCooperative } from '../src/tasks/scope-subset.js';

/** A small seeded PRNG (mulberry32), so a failure reproduces. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The reference the fast check replaced: a dynamic program over (child position,
 * parent position), cubic-free but length x length on every pair. Kept here as an
 * independent statement of inclusion to compare against.
 */
function referenceIncludes(parent: string, child: string): boolean {
  const p = parent.replace(/\*{2,}/g, '*');
  const c = child.replace(/\*{2,}/g, '*');
  if (!p.includes('*')) return p === c;
  const n = c.length;
  const m = p.length;
  const memo = new Uint8Array((n + 1) * (m + 1));
  const at = (i: number, j: number) => memo[i * (m + 1) + j] === 1;
  for (let i = n; i >= 0; i--) {
    for (let j = m; j >= 0; j--) {
      let v: boolean;
      if (j === m) v = i === n;
      else if (p[j] === '*') v = at(i, j + 1) || (i < n && at(i + 1, j));
      else v = i < n && c[i] !== '*' && c[i] === p[j] && at(i + 1, j + 1);
      memo[i * (m + 1) + j] = v ? 1 : 2;
    }
  }
  return at(0, 0);
}

function allStrings(alphabet: string[], maxLen: number): string[] {
  const out = [''];
  let layer = [''];
  for (let n = 1; n <= maxLen; n++) {
    const next: string[] = [];
    for (const s of layer) for (const ch of alphabet) next.push(s + ch);
    out.push(...next);
    layer = next;
  }
  return out;
}

describe('scope pattern inclusion', () => {
  it('decides the documented examples', () => {
    const yes: [string, string][] = [
      ['github.*', 'github.issues.*'],
      ['github.*', 'github.get'],
      ['github.*', 'github.*'],
      ['github.*', 'github.**'],
      ['*', '*'],
      ['*', 'anything'],
      ['*', ''],
      ['repo:acme/*', 'repo:acme/api'],
      ['repo:acme/*', 'repo:acme/api-*'],
      ['*.read', 'billing.*.read'],
      ['a*b*', 'a*b'],
      ['*a*', 'xa*ya'],
      ['github.get', 'github.get'],
    ];
    const no: [string, string][] = [
      ['github.*', '*'],
      ['github*', 'git*'],
      ['github.*', 'github'],
      ['github.*', 'github*'],
      ['github.*', 'gitlab.*'],
      ['github.get', 'github.*'],
      ['github.get', 'github.ge'],
      ['repo:acme/*', 'repo:acme*'],
      ['repo:acme/*', 'repo:*'],
      ['*.read', '*.read*'],
      ['a*b', 'a*'],
      ['', '*'],
    ];
    for (const [p, c] of yes) assert.equal(patternIncludes(p, c), true, `${c} ⊆ ${p}`);
    for (const [p, c] of no) assert.equal(patternIncludes(p, c), false, `${c} ⊄ ${p}`);
  });

  it('agrees exactly with brute force on every pattern pair up to length 3 (strings with a fresh letter)', () => {
    const patterns = allStrings(['a', 'b', '*'], 3);
    const strings = allStrings(['a', 'b', 'z'], 7);
    const languages = new Map(patterns.map((p) => [p, strings.filter((s) => matchPattern(p, s))]));
    for (const parent of patterns) {
      for (const child of patterns) {
        const included = languages.get(child)!.every((s) => matchPattern(parent, s));
        assert.equal(patternIncludes(parent, child), included, `child \`${child}\` ⊆ parent \`${parent}\`: brute force says ${included}`);
      }
    }
  });

  it('property: when it answers "included", no random string matched by the child escapes the parent', () => {
    const rand = rng(0x5eed);
    const alphabet = ['a', 'b', '.', '*'];
    const gen = (max: number) => Array.from({ length: Math.floor(rand() * (max + 1)) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
    /** a random string the child matches: each `*` replaced by a random run (with letters absent from the patterns) */
    const instance = (child: string) =>
      child
        .split('')
        .map((ch) => (ch === '*' ? Array.from({ length: Math.floor(rand() * 4) }, () => 'ab.*zq'[Math.floor(rand() * 6)]).join('') : ch))
        .join('');
    let included = 0;
    let refused = 0;
    for (let n = 0; n < 20_000; n++) {
      const parent = gen(7);
      // children derived from the parent are often included; random ones rarely
      const child = rand() < 0.5 ? gen(7) : parent.replace(/\*/g, () => gen(3));
      const verdict = patternIncludes(parent, child);
      if (verdict) {
        included++;
        for (let k = 0; k < 20; k++) {
          const s = instance(child);
          assert.ok(matchPattern(child, s));
          assert.ok(matchPattern(parent, s), `\`${s}\` matches child \`${child}\` but not parent \`${parent}\``);
        }
      } else {
        refused++;
      }
    }
    assert.ok(included > 1000 && refused > 1000, `both outcomes are exercised (${included}/${refused})`);
  });

  it('property: the fast check agrees with the dynamic-program reference on random patterns (seeded)', () => {
    const rand = rng(0xc0ffee);
    const alphabet = ['a', 'b', '.', '*', '*'];
    const gen = (max: number) => Array.from({ length: Math.floor(rand() * (max + 1)) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
    let yes = 0;
    for (let n = 0; n < 50_000; n++) {
      const parent = gen(12);
      // half the children derive from the parent (often included), half are random
      const child = rand() < 0.5 ? gen(12) : parent.replace(/\*/g, () => gen(3)).replace(/a/g, (x) => (rand() < 0.1 ? 'b' : x));
      const fast = patternIncludes(parent, child);
      assert.equal(fast, referenceIncludes(parent, child), `child \`${child}\` ⊆ parent \`${parent}\``);
      if (fast) yes++;
    }
    assert.ok(yes > 5000 && yes < 45_000, `both outcomes are exercised (${yes} included)`);
  });

  it('property: the fast check agrees with brute force on random patterns up to length 5', () => {
    const rand = rng(7);
    const strings = allStrings(['a', 'b', 'z'], 8);
    const gen = () => Array.from({ length: Math.floor(rand() * 6) }, () => 'ab**'[Math.floor(rand() * 4)]).join('');
    for (let n = 0; n < 300; n++) {
      const parent = gen();
      const child = gen();
      const included = strings.every((s) => !matchPattern(child, s) || matchPattern(parent, s));
      assert.equal(patternIncludes(parent, child), included, `child \`${child}\` ⊆ parent \`${parent}\`: brute force says ${included}`);
    }
  });

  it('property: a literal child is included exactly when the parent matches it', () => {
    const rand = rng(42);
    for (let n = 0; n < 5000; n++) {
      const parent = Array.from({ length: Math.floor(rand() * 6) }, () => 'ab*'[Math.floor(rand() * 3)]).join('');
      const child = Array.from({ length: Math.floor(rand() * 7) }, () => 'ab'[Math.floor(rand() * 2)]).join('');
      assert.equal(patternIncludes(parent, child), matchPattern(parent, child), `${child} vs ${parent}`);
    }
  });

  it('compares whole scopes field by field; an empty child list is within anything', () => {
    const parent = { tools: ['github.*', 'billing.read'], resources: ['repo:acme/*'], destinations: ['api.github.com'] };
    assert.equal(isScopeSubset(parent, { tools: ['github.issues.*'], resources: [], destinations: [] }), true);
    assert.equal(isScopeSubset(parent, { tools: ['billing.read', 'github.get'], resources: ['repo:acme/api'], destinations: ['api.github.com'] }), true);
    assert.deepEqual(scopeExcess(parent, { tools: ['*', 'github.get'], resources: ['repo:*'], destinations: ['*.github.com'] }), [
      { field: 'tools', patterns: ['*'] },
      { field: 'resources', patterns: ['repo:*'] },
      { field: 'destinations', patterns: ['*.github.com'] },
    ]);
    assert.deepEqual(scopeExcess({ tools: ['x'], resources: [], destinations: [] }, { tools: ['x'], resources: ['r'], destinations: [] }), [
      { field: 'resources', patterns: ['r'] },
    ]);
  });

  it('the cooperative check answers what the synchronous one does', async () => {
    const parent = { tools: ['github.*', 'billing.read'], resources: ['repo:acme/*'], destinations: ['api.github.com'] };
    const child = { tools: ['*', 'github.get'], resources: ['repo:*', 'repo:acme/x'], destinations: ['*.github.com'] };
    assert.deepEqual(await scopeExcessCooperative(parent, child, 0), scopeExcess(parent, child));
    assert.deepEqual(await scopeExcessCooperative(parent, { tools: ['github.x'], resources: [], destinations: [] }), []);
  });
});

describe('scope bounds', () => {
  it('counts runs of `*` once, and names the list and the bound', () => {
    assert.equal(starCount('a**b*c'), 2);
    assert.equal(starCount('***'), 1);
    assert.equal(starCount('abc'), 0);
    assert.equal(scopeBoundsProblem({ tools: ['a'], resources: [], destinations: [] }), null);
    assert.deepEqual(scopeBoundsProblem({ tools: ['a'], resources: ['ok', 'x'.repeat(SCOPE_LIMITS.patternLength + 1)] })?.path, ['resources', 1]);
    assert.deepEqual(scopeBoundsProblem({ tools: Array(SCOPE_LIMITS.patternsPerList + 1).fill('a') })?.path, ['tools']);
    assert.deepEqual(scopeBoundsProblem({ tools: ['a'], destinations: ['*a'.repeat(SCOPE_LIMITS.starsPerPattern + 1)] })?.path, ['destinations', 0]);
    // a list left out (a child that inherits) is no problem
    assert.equal(scopeBoundsProblem({ tools: ['a'] }), null);
  });
});
