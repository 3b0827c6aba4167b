import { lineColumn, located } from './diagnostics.js';
import { InvalidRequestError } from '../core/errors.js';

/**
 * A cheap, non-recursive scan of Cedar policy text that bounds how deep and how large
 * each policy's expressions are, before any of the text reaches Cedar.
 *
 * Why: Cedar's parser, validator and evaluator recurse over the expression tree inside
 * WebAssembly, whose stack is fixed. A valid policy nested deeply enough traps them
 * ("memory access out of bounds"), and a trap leaves that WebAssembly instance broken.
 * Measured with cedar-wasm 4.13 (first trap): 73 nested `(`, `[` or `{`; about 104
 * chained operators evaluated (`&&`, `||`, `.`, `+`, `!`, `if`); 35 nested
 * `[x].contains(...)`. So this scan refuses far below those, by an estimate that only
 * ever over-counts the tree's depth (see `estimateDepth`).
 *
 * The scan itself is a single loop over the characters with an explicit stack of
 * bracket levels: it cannot overflow on any input.
 */

export interface ComplexityLimits {
  /** the largest estimated expression depth of one policy */
  maxDepth: number;
  /** the most tokens one policy may have (its expression size) */
  maxTokens: number;
  /** the longest `like` pattern, in characters of its literal */
  maxLikePatternLength: number;
  /** the most `*` wildcards one `like` pattern may have */
  maxLikeWildcards: number;
}

export const DEFAULT_COMPLEXITY_LIMITS: ComplexityLimits = {
  maxDepth: 32,
  maxTokens: 10_000,
  maxLikePatternLength: 256,
  maxLikeWildcards: 8,
};

/** 400 `policy_too_complex`: names the policy and the limit it is over. */
export function tooComplex(policy: string, what: string, details: Record<string, unknown> = {}): InvalidRequestError {
  return new InvalidRequestError(`policy \`${policy}\` is too complex: ${what}`, { policy_id: policy, ...details }, 'policy_too_complex');
}

interface Level {
  /** `&&`, `||` and `if` seen at this level: each may add one to the depth of the tree */
  logical: number;
  /** operators in the current operand (between logical operators, `then`, `else`, `,` and `:`) */
  term: number;
  maxTerm: number;
  /** the deepest nested level closed inside this one */
  maxChild: number;
  close: string;
}

const OPEN: Record<string, string> = { '(': ')', '[': ']', '{': '}' };
/** [A-Za-z0-9_] by char code: no regex per character */
function isIdent(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95;
}
const TERM_KEYWORDS = new Set(['in', 'has', 'like', 'is']);

/**
 * Scans a policy set's text; throws `policy_too_complex` (naming the policy by its
 * `@id`, else `line N (no @id)`: the scan does not see a policy's whole text, from which
 * the engine derives the id) for the first policy over a limit, with a located diagnostic.
 * Syntax errors are left to Cedar (which parses only text that passed this scan).
 */
export function checkPolicyComplexity(text: string, limits: ComplexityLimits = DEFAULT_COMPLEXITY_LIMITS): void {
  let index = 0;
  let id: string | null = null;
  let tokens = 0;
  let lastIdent = '';
  let pendingAnnotation: string | null = null;
  const root = (): Level => ({ logical: 0, term: 0, maxTerm: 0, maxChild: 0, close: '' });
  const stack: Level[] = [root()];
  // where the current policy's first token is: names a policy without @id by its line
  let policyStart = 0;
  const name = () => id ?? `line ${lineColumn(text, policyStart).line} (no @id)`;
  /** `policy_too_complex` for the current policy, with a diagnostic at the current position */
  const fail = (what: string, details: Record<string, unknown>) => {
    const policy = name();
    const at = Math.min(i, text.length - 1);
    const diagnostic = located(text, { severity: 'error', policy_id: id, message: `policy \`${policy}\` is too complex: ${what}` }, at, at + 1);
    return tooComplex(policy, what, { ...details, diagnostics: [diagnostic] });
  };
  const top = () => stack[stack.length - 1]!;
  const depthOf = (l: Level) => l.logical + l.maxTerm + 1 + l.maxChild;
  const checkDepth = (l: Level) => {
    // The deepest path through one level passes its logical operators, then the
    // operators of one operand, then the deepest level nested in it: their sum bounds it.
    const d = depthOf(l);
    if (d > limits.maxDepth) throw fail(`its expressions nest deeper than ${limits.maxDepth} (estimated depth ${d}, counting brackets and chained operators)`, { limit: 'depth', max: limits.maxDepth });
  };
  const op = () => {
    const l = top();
    l.term += 1;
    if (l.term > l.maxTerm) l.maxTerm = l.term;
    if (l.logical + l.maxTerm + 1 + stack.length - 1 > limits.maxDepth) checkDepth(l);
  };
  const logical = () => {
    const l = top();
    l.logical += 1;
    l.term = 0;
    if (l.logical + stack.length > limits.maxDepth) checkDepth(l);
  };
  const separate = () => {
    top().term = 0;
  };
  const count = () => {
    if (tokens === 0) policyStart = i;
    tokens += 1;
    if (tokens > limits.maxTokens) throw fail(`it has more than ${limits.maxTokens} tokens`, { limit: 'tokens', max: limits.maxTokens });
  };

  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i += 1;
      continue;
    }
    if (c === '/' && text[i + 1] === '/') {
      const end = text.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
      continue;
    }
    count();
    if (c === '"') {
      // a string literal, with backslash escapes
      let j = i + 1;
      while (j < n && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const literal = text.slice(i + 1, Math.min(j, n));
      if (lastIdent === 'like') {
        if (literal.length > limits.maxLikePatternLength) {
          throw fail(`a \`like\` pattern is longer than ${limits.maxLikePatternLength} characters`, { limit: 'like_pattern_length', max: limits.maxLikePatternLength });
        }
        const stars = (literal.replace(/\\./g, '').match(/\*/g) ?? []).length;
        if (stars > limits.maxLikeWildcards) {
          throw fail(`a \`like\` pattern has more than ${limits.maxLikeWildcards} wildcards`, { limit: 'like_wildcards', max: limits.maxLikeWildcards });
        }
      }
      if (pendingAnnotation === 'id' && stack.length === 2 && id === null) id = literal;
      lastIdent = '';
      i = j + 1;
      continue;
    }
    if (isIdent(text.charCodeAt(i))) {
      let j = i + 1;
      while (j < n && isIdent(text.charCodeAt(j))) j += 1;
      const word = text.slice(i, j);
      if (text[i - 1] === '@' && stack.length === 1) pendingAnnotation = word;
      if (word === 'if') logical();
      else if (word === 'then' || word === 'else') separate();
      else if (TERM_KEYWORDS.has(word)) op();
      lastIdent = word;
      i = j;
      continue;
    }
    const two = i + 1 < n ? c + text[i + 1] : c;
    lastIdent = '';
    if (two === '&&' || two === '||') {
      logical();
      i += 2;
      continue;
    }
    if (two === '==' || two === '!=' || two === '<=' || two === '>=') {
      op();
      i += 2;
      continue;
    }
    if (two === '::') {
      i += 2;
      continue;
    }
    if (OPEN[c]) {
      stack.push({ logical: 0, term: 0, maxTerm: 0, maxChild: 0, close: OPEN[c]! });
      if (stack.length - 1 > limits.maxDepth) throw fail(`its brackets nest deeper than ${limits.maxDepth}`, { limit: 'depth', max: limits.maxDepth });
      i += 1;
      continue;
    }
    if (c === ')' || c === ']' || c === '}') {
      if (stack.length > 1) {
        const l = stack.pop()!;
        checkDepth(l);
        const parent = top();
        const d = depthOf(l);
        if (d > parent.maxChild) parent.maxChild = d;
        if (c === ')' && stack.length === 1) pendingAnnotation = null;
      }
      i += 1;
      continue;
    }
    if (c === ';' && stack.length === 1) {
      checkDepth(top());
      stack[0] = root();
      index += 1;
      id = null;
      tokens = 0;
      pendingAnnotation = null;
      i += 1;
      continue;
    }
    if (c === ',' || c === ':') separate();
    else if (c === '.' || c === '<' || c === '>' || c === '+' || c === '-' || c === '*' || c === '!') op();
    i += 1;
  }
  // text that ends inside brackets: counted as if they were closed (Cedar will refuse it,
  // but only after its parser has been through it)
  while (stack.length > 1) {
    const l = stack.pop()!;
    checkDepth(l);
    const parent = top();
    parent.maxChild = Math.max(parent.maxChild, depthOf(l));
  }
  checkDepth(top());
}
