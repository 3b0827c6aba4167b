import type { AgentRecord, TaskRecord } from '../core/types.js';

/** One request as Cedar is asked it (src/policy/engine.ts evaluates it). */
export interface CedarRequest {
  principal: { type: string; id: string };
  resource: { type: string; id: string };
  context: Record<string, unknown>;
  entities: unknown[];
}

export interface ActionInput {
  tool: string;
  arguments: Record<string, unknown>;
  audience: string;
  resource?: string;
  destination?: string;
}

export interface RequestFacts {
  agent: AgentRecord;
  task: TaskRecord;
  /** the root task, for delegated tasks (the task itself otherwise) */
  root?: TaskRecord;
  /** agent ids from the root task's agent down to this task's agent's delegator */
  chain?: string[];
  action: ActionInput;
  argsDigest: string;
  now: number;
  toolLabels?: string[];
  approval?: { granted: boolean; approvers: number };
  breakGlass?: boolean;
  ownerPresent?: boolean;
  /** whether to build the argument tag entities (skipped when no policy reads them) */
  withArgs: boolean;
  /** the arguments flattened already (by the caller's check), to not do it twice */
  flatArgs?: FlatArguments;
  /**
   * the tag names the policy set reads (engine.ts `tagsRead`): only those are passed,
   * since Cedar's cost grows with every tag it is handed; absent = every argument. A
   * tag a policy reads is always passed when present, so `hasTag` answers as it would
   * with every tag.
   */
  argReads?: ArgumentReads;
}

/** Of `tags`, those named in `read` (null: all of them; false: none). */
function pickTags<T>(tags: Record<string, T>, read: Set<string> | null | false | undefined): Record<string, T> {
  if (read === null || read === undefined) return tags;
  const out: Record<string, T> = {};
  if (read === false) return out;
  for (const k of read) if (Object.hasOwn(tags, k)) out[k] = tags[k]!;
  return out;
}

/** `github.create_issue` -> `github`: the tool's server, and its ToolGroup. */
export function toolServer(tool: string): string {
  const i = tool.indexOf('.');
  return i > 0 ? tool.slice(0, i) : tool;
}

/** Past this many leaves (or this depth) arguments are not flattened: the request is denied. */
export const MAX_ARGUMENT_LEAVES = 2048;
export const MAX_ARGUMENT_DEPTH = 32;

export interface FlatArguments {
  strings: Record<string, string>;
  longs: Record<string, number>;
  /**
   * set when the arguments cannot be shown to policy faithfully: too many leaves, too
   * deep, or two paths that read the same (`{"a": {"b": 1}, "a.b": 2}`); policy would
   * otherwise judge a different call than the one made, so the caller denies
   */
  problem?: { code: 'arguments_too_complex' | 'ambiguous_arguments'; message: string };
}

/**
 * Flattens arguments to scalar leaves keyed by dotted path (`a.b`, `list.0`).
 * Every leaf becomes a string tag; safe integers also a Long tag.
 */
export function flattenArguments(args: Record<string, unknown>): FlatArguments {
  const strings: Record<string, string> = {};
  const longs: Record<string, number> = {};
  let count = 0;
  let problem: FlatArguments['problem'];
  const walk = (value: unknown, path: string, depth: number): void => {
    if (problem) return;
    if (value !== null && typeof value === 'object') {
      if (depth >= MAX_ARGUMENT_DEPTH) {
        problem = { code: 'arguments_too_complex', message: `arguments nest deeper than ${MAX_ARGUMENT_DEPTH} levels` };
        return;
      }
      const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
      for (const [k, v] of entries) walk(v, path ? `${path}.${k}` : k, depth + 1);
      return;
    }
    if (!path) return;
    if (++count > MAX_ARGUMENT_LEAVES) {
      problem = { code: 'arguments_too_complex', message: `arguments have more than ${MAX_ARGUMENT_LEAVES} values` };
      return;
    }
    if (Object.hasOwn(strings, path)) {
      problem = { code: 'ambiguous_arguments', message: `two arguments read as \`${path.slice(0, 200)}\`` };
      return;
    }
    if (typeof value === 'string') strings[path] = value;
    else {
      strings[path] = String(value);
      if (typeof value === 'number' && Number.isSafeInteger(value)) longs[path] = value;
    }
  };
  walk(args, '', 0);
  return problem ? { strings, longs, problem } : { strings, longs };
}

/** What policy reads of the arguments: tag names per kind; null = computed names (anything); false = none. */
export interface ArgumentReads {
  numeric: Set<string> | null | false;
  strings: Set<string> | null | false;
}

type Problem = { code: string; message: string };

function mismatch(message: string): Problem {
  return { code: 'argument_type_mismatch', message };
}

/**
 * The reason to deny when the arguments cannot be judged as policy reads them:
 * - flattening failed (too many values, too deep, two paths that read the same);
 * - an argument a policy reads as an integer (`num_args`) is present but is not one
 *   (`"1000"`, `1000.5`, `1e30`): with no tag, `hasTag` would be false and a `forbid`
 *   on the amount would not apply;
 * - an argument a policy reads (`args` or `num_args`) holds an array or an object, or
 *   is reached through an array where the policy names a key (see `argumentShapeProblem`).
 */
export function argumentsProblem(flat: FlatArguments, reads: ArgumentReads, args: Record<string, unknown>): Problem | null {
  if (flat.problem) return flat.problem;
  if (reads.numeric !== false) {
    const keys = reads.numeric ?? Object.keys(flat.strings);
    for (const k of keys) {
      if (Object.hasOwn(flat.strings, k) && !Object.hasOwn(flat.longs, k)) {
        return mismatch(`argument \`${k.slice(0, 200)}\` is read by policy as an integer but is \`${flat.strings[k]!.slice(0, 100)}\``);
      }
    }
  }
  if (reads.numeric === false && reads.strings === false) return null;
  if (reads.numeric === null || reads.strings === null) return argumentShapeProblem(args, null);
  return (reads.numeric && argumentShapeProblem(args, reads.numeric)) || (reads.strings && argumentShapeProblem(args, reads.strings)) || null;
}

const INDEX = /^(0|[1-9][0-9]*)$/;

/**
 * Policy reads flattened arguments (`a.b`, `list.0`), but a tool reads the JSON. Where
 * a policy reads key K, a value that is an array or an object at K would be shown to
 * policy under other names (`amount: [5000]` as `amount.0`), so `hasTag("amount")` is
 * false while a loosely typed handler reads 5000. Likewise an array met where K names
 * an object key (`{"payment": [{"amount": 5000}]}` when policy reads `payment.amount`):
 * its elements are shown as `payment.0.amount`. Both are refused: a value at a read
 * key must be a scalar (or absent), reached through objects, or through arrays only
 * by an explicit index in K. Keys that contain `.` are followed too (`{"a.b": …}`).
 *
 * `read` null means policy computes tag names: then no argument may be an array or an
 * object, since any of them could be read.
 */
export function argumentShapeProblem(args: Record<string, unknown>, read: Set<string> | null): Problem | null {
  if (read === null) {
    for (const [k, v] of Object.entries(args)) {
      if (v !== null && typeof v === 'object') {
        return mismatch(`argument \`${k.slice(0, 200)}\` is ${Array.isArray(v) ? 'an array' : 'an object'}; policy reads arguments by computed names, so each must be a string, number, boolean or null`);
      }
    }
    return null;
  }
  for (const key of read) {
    const p = shapeAt(args, key, '', 0);
    if (p) return p;
  }
  return null;
}

function shapeAt(node: unknown, rest: string, at: string, depth: number): Problem | null {
  const join = (k: string) => (at ? `${at}.${k}` : k);
  if (rest === '') {
    if (node !== null && typeof node === 'object') {
      return mismatch(`argument \`${at.slice(0, 200)}\` is read by policy as one value but is ${Array.isArray(node) ? 'an array' : 'an object'}`);
    }
    return null;
  }
  if (node === null || typeof node !== 'object' || depth > MAX_ARGUMENT_DEPTH) return null;
  if (Array.isArray(node)) {
    const dot = rest.indexOf('.');
    const seg = dot < 0 ? rest : rest.slice(0, dot);
    if (!INDEX.test(seg)) {
      return mismatch(`argument \`${(at || '(top)').slice(0, 200)}\` is an array where policy reads the key \`${seg.slice(0, 100)}\``);
    }
    const i = Number(seg);
    return i < node.length ? shapeAt(node[i], dot < 0 ? '' : rest.slice(dot + 1), join(seg), depth + 1) : null;
  }
  // every split of `rest` at a dot that names an own key: `a.b.c` may be `a` then `b.c`, or `a.b` then `c`, …
  for (let dot = rest.indexOf('.'); ; dot = rest.indexOf('.', dot + 1)) {
    const k = dot < 0 ? rest : rest.slice(0, dot);
    if (Object.hasOwn(node, k)) {
      const p = shapeAt((node as Record<string, unknown>)[k], dot < 0 ? '' : rest.slice(dot + 1), join(k), depth + 1);
      if (p) return p;
    }
    if (dot < 0) return null;
  }
}

/**
 * Builds the Cedar request, passing only the entities the request touches
 * (principal, resource, their groups, the argument entities): Cedar's cost grows
 * with every entity passed.
 */
export function buildCedarRequest(f: RequestFacts): CedarRequest {
  const { agent, task, action } = f;
  const root = f.root ?? task;
  const server = toolServer(action.tool);
  const d = new Date(f.now);
  const context: Record<string, unknown> = {
    task: {
      id: task.id,
      intent: task.intent,
      owner: task.owner,
      depth: task.depth,
      root_id: root.id,
      root_owner: root.owner,
      root_intent: root.intent,
    },
    audience: action.audience,
    args: { __entity: { type: 'Writ::Arguments', id: 'request' } },
    num_args: { __entity: { type: 'Writ::NumericArguments', id: 'request' } },
    args_digest: f.argsDigest,
    usage: {
      actions_used: task.actionsUsed,
      actions_left: Math.max(0, task.maxActions - task.actionsUsed - task.actionsReserved),
      max_actions: task.maxActions,
    },
    time: { epoch_seconds: Math.floor(f.now / 1000), hour_utc: d.getUTCHours(), weekday: d.getUTCDay() },
    approval: f.approval ?? { granted: false, approvers: 0 },
    break_glass: f.breakGlass ?? false,
    owner_present: f.ownerPresent ?? true,
    delegation: { depth: task.depth, chain: f.chain ?? [] },
  };
  if (action.resource !== undefined) context.resource = action.resource;
  if (action.destination !== undefined) context.destination = action.destination;

  const entities: unknown[] = [
    {
      uid: { type: 'Writ::Agent', id: agent.id },
      attrs: { name: agent.name, labels: agent.labels },
      parents: agent.labels.map((l) => ({ type: 'Writ::AgentGroup', id: l })),
    },
    {
      uid: { type: 'Writ::Tool', id: action.tool },
      attrs: { name: action.tool, server, labels: f.toolLabels ?? [] },
      parents: [{ type: 'Writ::ToolGroup', id: server }],
    },
  ];
  if (f.withArgs) {
    const flat = f.flatArgs ?? flattenArguments(action.arguments);
    entities.push(
      { uid: { type: 'Writ::Arguments', id: 'request' }, attrs: {}, parents: [], tags: pickTags(flat.strings, f.argReads?.strings) },
      { uid: { type: 'Writ::NumericArguments', id: 'request' }, attrs: {}, parents: [], tags: pickTags(flat.longs, f.argReads?.numeric) },
    );
  }
  return {
    principal: { type: 'Writ::Agent', id: agent.id },
    resource: { type: 'Writ::Tool', id: action.tool },
    context,
    entities,
  };
}
