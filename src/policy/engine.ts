import type * as cedarTypes from '@cedar-policy/cedar-wasm/nodejs';
import { sha256Hex } from '../core/digest.js';
import { InvalidRequestError, UnavailableError } from '../core/errors.js';
import { CedarPool, CedarPoolError, type PoolAnswer } from './cedar-pool.js';
import { cedar as cedarNow, cedarGeneration, resetCedar } from './cedar-runtime.js';
import { checkPolicyComplexity, DEFAULT_COMPLEXITY_LIMITS, tooComplex, type ComplexityLimits } from './complexity.js';
import { derivedPolicyId, fromCedar, located, type PolicyDiagnostic } from './diagnostics.js';
import { buildCedarRequest, toolServer, type CedarRequest } from './request.js';
import { WRIT_SCHEMA } from './schema.js';


export type { PolicyDiagnostic } from './diagnostics.js';

export interface LoadedPolicySet {
  /** content hash of the policy text: the version every decision records */
  version: string;
  text: string;
  policyIds: string[];
  /** what passed but deserves a look (./diagnostics.ts): a policy without `@id`, Cedar's warnings */
  warnings: PolicyDiagnostic[];
  annotations: Record<string, Record<string, string>>;
  /** whether any policy reads the argument tags; when none does, they are not built */
  readsArgs: boolean;
  /**
   * the tags policies read from `context.num_args` (`getTag`/`hasTag` with a literal
   * name); null when some policy names one with an expression (then every argument
   * counts); false when no policy reads `num_args`
   */
  numericTagsRead: Set<string> | null | false;
  /** the same for `context.args` (string tags) */
  stringTagsRead: Set<string> | null | false;
  /**
   * whether any policy reads `context.approval` / `context.break_glass` /
   * `context.owner_present`: only then does a deny get a second evaluation
   * (src/authorize/escalation.ts) or the presence lease get read
   */
  mentionsApproval: boolean;
  mentionsBreakGlass: boolean;
  mentionsPresence: boolean;
  /**
   * the top-level `context` attributes any policy reads, or null when some policy
   * uses `context` as a whole: Cedar's cost grows with the context it is handed, so
   * only these are passed (a policy reading an attribute not passed would error,
   * and an error denies: the narrowing can only ever fail closed)
   */
  contextKeys: Set<string> | null;
  /** the policies by id, as text: for partial evaluation (`couldAllow`) */
  parts: Record<string, string>;
  /**
   * preparsed sub-sets per named tool and tool group (see `partitionByTool`): the id
   * of the set to evaluate for tool `t` of group `g` is `partitions.get('tool:' + t) ??
   * partitions.get('group:' + g) ?? partitions.get('*')`; null when the set is evaluated whole
   */
  partitions: Map<string, string> | null;
  /**
   * per preparsed set (by its id: the whole set's version, or a part of a split set):
   * what its policies read, so a call carries only that (see `PartReads`)
   */
  partReads?: Map<string, PartReads>;
}

/**
 * What the policies of one preparsed set can read of a request. Cedar's cost grows with
 * every entity, attribute and context attribute it is handed (about 10-40 us each in
 * cedar-wasm 4, more than evaluating the policies), so a call carries only these. Every
 * narrowing fails closed or is unobservable: a policy can reach an attribute only by
 * `.name` or `has name` (Cedar has no other attribute access and no dynamic names), so
 * an attribute whose name no policy mentions is never seen; a policy that reads a
 * context attribute not passed errors, and an error denies.
 */
export interface PartReads {
  /** the top-level context attributes read, or null when a policy uses `context` as a whole */
  contextKeys: Set<string> | null;
  /**
   * the attribute names the policies access (`e.name`, `e has name`) on the principal (the
   * agent) and on the resource (the tool), either directly or on an expression that may be
   * either: the entity's other attributes are left out
   */
  agentAttrs: Set<string>;
  toolAttrs: Set<string>;
  /** whether the policies can reach the `Writ::Arguments` / `Writ::NumericArguments` entity (through the context, or by naming its type) */
  args: boolean;
  numArgs: boolean;
  /**
   * per context attribute holding a record (`usage`, `task`, `delegation`, `time`): the
   * fields read, when the policies only ever read its fields by name (`context.usage.x`,
   * `context.usage has x`); an attribute used any other way (compared, put in a set) is
   * passed whole. A record's other fields cannot be observed.
   */
  contextFields: Map<string, Set<string>>;
  /**
   * every string in the policies: a group (a parent of the agent or the tool) not among
   * them is never named, so no `in` can test it (a group is reachable only as a literal)
   */
  strings: Set<string>;
  /**
   * per context record field (`usage` -> `actions_left` -> ...), when every read of its
   * value is a comparison (`<`, `<=`, `>`, `>=`, `==`, `!=`) with an integer literal: those
   * literals, sorted. A value is then passed as the representative of its class (equal to
   * one literal, or strictly between two neighbours: `classOf`), which every comparison
   * answers alike, so the call's text repeats across requests and its decision can be
   * remembered (`PolicyEngine` memo). A field read any other way is absent here.
   */
  fieldClasses: Map<string, Map<string, number[]>>;
  /**
   * the tag names any policy passes to `getTag` (on any entity), or null when one is not
   * a literal: an argument tag not among them is only ever tested with `hasTag`, so its
   * value is unobservable and passed as `""` (string tags) or `0` (numeric tags).
   */
  tagValuesRead: Set<string> | null;
}

export type { CedarRequest } from './request.js';

export interface Evaluation {
  decision: 'allow' | 'deny';
  /** determining policies */
  policies: string[];
  errors: { policy_id: string; message: string }[];
}

const SCHEMA_NAME = 'writ';

/** Version ids are content hashes: the same text always gets the same version. */
export function policyVersion(text: string): string {
  return sha256Hex(text).slice(0, 32);
}

/**
 * Parses and validates a policy set against the Writ schema. Throws
 * InvalidRequestError(`invalid_policy`) with located diagnostics (./diagnostics.ts)
 * when it does not; `warnings` are what passes but deserves a look (a policy without
 * `@id`, named from its text).
 */
export function checkPolicyText(
  text: string,
  limits: ComplexityLimits = DEFAULT_COMPLEXITY_LIMITS,
): {
  ids: string[];
  parts: Record<string, string>;
  annotations: Record<string, Record<string, string>>;
  json: Record<string, cedarTypes.PolicyJson>;
  /** where each policy starts in `text` (UTF-16 offset) */
  offsets: Record<string, number>;
  warnings: PolicyDiagnostic[];
} {
  // before any of the text reaches Cedar, whose parser recurses (./complexity.ts)
  checkPolicyComplexity(text, limits);
  const cedar = cedarNow();
  const split = cedar.policySetTextToParts(text);
  if (split.type !== 'success') throw invalid('the policy text does not parse', split.errors.map((e) => fromCedar(text, null, e)));
  if (split.policy_templates.length > 0) throw invalid('policy templates are not supported', []);
  const parts: Record<string, string> = {};
  const annotations: Record<string, Record<string, string>> = {};
  const jsonById: Record<string, cedarTypes.PolicyJson> = {};
  const offsets: Record<string, number> = {};
  const warnings: PolicyDiagnostic[] = [];
  let cursor = 0;
  split.policies.forEach((p) => {
    // Cedar hands back each policy as a slice of the text: find it to report positions
    const found = text.indexOf(p, cursor);
    const base = found >= 0 ? found : 0;
    if (found >= 0) cursor = found + p.length;
    const json = cedar.policyToJson(p);
    if (json.type !== 'success') throw invalid('the policy text does not parse', json.errors.map((e) => fromCedar(text, null, e, base)));
    const ann = (json.json.annotations ?? {}) as Record<string, string>;
    let id = ann.id;
    if (id === undefined) {
      id = derivedPolicyId(p);
      warnings.push(located(text, { severity: 'warning', policy_id: id, message: `a policy has no @id; it is named \`${id}\` from its text`, help: 'add @id("...") so decisions and audit name it' }, found >= 0 ? base : null, found >= 0 ? base + (p.match(/^\S+/)?.[0].length ?? 1) : null));
    }
    if (parts[id] !== undefined) {
      throw invalid(`two policies have the id \`${id}\``, [located(text, { severity: 'error', policy_id: id, message: `two policies have the id \`${id}\`` }, found >= 0 ? base : null)]);
    }
    parts[id] = p;
    jsonById[id] = json.json;
    offsets[id] = base;
    checkEscalationAnnotations(text, base, id, ann);
    annotations[id] = ann;
  });
  const v = cedar.validate({ schema: WRIT_SCHEMA, policies: { staticPolicies: parts }, validationSettings: { mode: 'strict' } });
  if (v.type !== 'success') throw invalid('the policy set does not validate', v.errors.map((e) => fromCedar(text, null, e)));
  if (v.validationErrors.length > 0) {
    throw invalid(
      'the policy set does not validate against the schema',
      v.validationErrors.map((e) => fromCedar(text, e.policyId, e.error, offsets[e.policyId] ?? 0)),
    );
  }
  for (const w of v.validationWarnings) warnings.push(fromCedar(text, w.policyId, w.error, offsets[w.policyId] ?? 0, 'warning'));
  return { ids: Object.keys(parts), parts, annotations, json: jsonById, offsets, warnings };
}

/**
 * The top-level context attributes the policies read (`context.x`, `context has x`),
 * from their JSON form; null when a policy uses `context` any other way.
 */
export function contextAttributesRead(policies: cedarTypes.PolicyJson[]): Set<string> | null {
  const keys = new Set<string>();
  let whole = false;
  const isContext = (e: unknown) => typeof e === 'object' && e !== null && (e as { Var?: unknown }).Var === 'context';
  const walk = (e: unknown): void => {
    if (whole || typeof e !== 'object' || e === null) return;
    if (Array.isArray(e)) return e.forEach(walk);
    const o = e as Record<string, any>;
    if (isContext(o)) {
      whole = true;
      return;
    }
    const access = o['.'] ?? o.has;
    if (access && typeof access === 'object' && 'left' in access && 'attr' in access && Object.keys(o).length === 1) {
      if (isContext(access.left)) {
        const attr = Array.isArray(access.attr) ? access.attr[0] : access.attr;
        if (typeof attr === 'string') keys.add(attr);
        else whole = true;
        return;
      }
    }
    for (const v of Object.values(o)) walk(v);
  };
  for (const p of policies) walk(p.conditions);
  return whole ? null : keys;
}

/**
 * The attribute names the policies access (`e.name`, `e has name`, `e has a.b`): on
 * `principal`, on `resource`, and on any other expression (`any`: a record, an entity
 * literal, a conditional, which may be either entity). In Cedar these are the only ways
 * to read an attribute, and the names are literal, so an attribute of the principal not
 * in `principal` or `any` (of the resource: `resource` or `any`) cannot affect an answer.
 * Accesses on `context` itself are its attributes (`contextAttributesRead`), not an entity's.
 */
export function attributesRead(policies: cedarTypes.PolicyJson[]): { principal: Set<string>; resource: Set<string>; any: Set<string> } {
  const out = { principal: new Set<string>(), resource: new Set<string>(), any: new Set<string>() };
  const walk = (e: unknown): void => {
    if (typeof e !== 'object' || e === null) return;
    if (Array.isArray(e)) return e.forEach(walk);
    const o = e as Record<string, any>;
    for (const op of ['.', 'has']) {
      const access = o[op];
      if (access && typeof access === 'object' && 'attr' in access) {
        const v = access.left && typeof access.left === 'object' && Object.keys(access.left).length === 1 ? access.left.Var : undefined;
        if (v === 'context') continue;
        const into = v === 'principal' ? out.principal : v === 'resource' ? out.resource : out.any;
        // `e has a.b` may come as a path: its first name is read on `e`, the rest on what that holds
        const names: unknown[] = Array.isArray(access.attr) ? access.attr : [access.attr];
        names.forEach((a, i) => {
          if (typeof a === 'string') (i === 0 ? into : out.any).add(a);
        });
      }
    }
    for (const v of Object.values(o)) walk(v);
  };
  for (const p of policies) walk(p);
  return out;
}

/** `context.<k>` as JSON: the attribute name `k`, else null. */
function contextAttr(e: unknown): string | null {
  if (!e || typeof e !== 'object') return null;
  const o = e as Record<string, any>;
  const a = o['.'];
  if (!a || Object.keys(o).length !== 1 || typeof a.attr !== 'string') return null;
  const left = a.left;
  return left && typeof left === 'object' && Object.keys(left).length === 1 && left.Var === 'context' ? a.attr : null;
}

/**
 * Per context attribute, the fields the policies read of it (`context.k.f`, `context.k
 * has f`, `context has k.f`), for the attributes only ever read that way: any other use
 * of `context.k` (compared, passed to a method, put in a set or record) leaves it out of
 * the map, so it is passed whole.
 */
export function contextFieldsRead(policies: cedarTypes.PolicyJson[]): Map<string, Set<string>> {
  const fields = new Map<string, Set<string>>();
  const whole = new Set<string>();
  const add = (k: string, f: unknown) => {
    if (typeof f !== 'string') return void whole.add(k);
    let set = fields.get(k);
    if (!set) fields.set(k, (set = new Set()));
    set.add(f);
  };
  const walk = (e: unknown): void => {
    if (typeof e !== 'object' || e === null) return;
    if (Array.isArray(e)) return e.forEach(walk);
    const o = e as Record<string, any>;
    const direct = contextAttr(o);
    if (direct !== null) return void whole.add(direct);
    for (const op of ['.', 'has']) {
      const access = o[op];
      if (!access || typeof access !== 'object' || Object.keys(o).length !== 1) continue;
      const k = contextAttr(access.left);
      if (k !== null) {
        // `context.k.f`, `context.k has f` (a path: its first name is the field of `k`)
        add(k, Array.isArray(access.attr) ? access.attr[0] : access.attr);
        return;
      }
      const left = access.left;
      if (Array.isArray(access.attr) && access.attr.length > 1 && left && typeof left === 'object' && Object.keys(left).length === 1 && left.Var === 'context') {
        // `context has k.f`
        add(access.attr[0], access.attr[1]);
        return;
      }
    }
    for (const v of Object.values(o)) walk(v);
  };
  for (const p of policies) walk(p.conditions);
  for (const k of whole) fields.delete(k);
  return fields;
}

/** Every string value in the policies' JSON (entity ids, literals, annotations). */
function stringsIn(policies: cedarTypes.PolicyJson[]): Set<string> {
  const out = new Set<string>();
  const walk = (e: unknown): void => {
    if (typeof e === 'string') out.add(e);
    else if (Array.isArray(e)) e.forEach(walk);
    else if (e && typeof e === 'object') for (const v of Object.values(e)) walk(v);
  };
  policies.forEach(walk);
  return out;
}

const COMPARISONS = ['<', '<=', '>', '>=', '==', '!='];

/** `context.<k>.<f>` as JSON: `[k, f]`, else null. */
function contextFieldOf(e: unknown): [string, string] | null {
  if (!e || typeof e !== 'object') return null;
  const o = e as Record<string, any>;
  const a = o['.'];
  if (!a || Object.keys(o).length !== 1 || typeof a.attr !== 'string') return null;
  const k = contextAttr(a.left);
  return k === null ? null : [k, a.attr];
}

/** An integer literal JavaScript holds exactly (a larger one is not taken: it may have been rounded). */
function integerLiteral(e: unknown): number | null {
  if (!e || typeof e !== 'object') return null;
  const o = e as Record<string, unknown>;
  return Object.keys(o).length === 1 && Number.isSafeInteger(o.Value) ? (o.Value as number) : null;
}

/**
 * Per context record field, the integer literals it is compared with, for the fields whose
 * value is read only that way (see `PartReads.fieldClasses`); `has` tests do not read a value.
 */
export function fieldClassesRead(policies: cedarTypes.PolicyJson[]): Map<string, Map<string, number[]>> {
  const literals = new Map<string, Set<number>>();
  const other = new Set<string>();
  const walk = (e: unknown): void => {
    if (typeof e !== 'object' || e === null) return;
    if (Array.isArray(e)) return e.forEach(walk);
    const o = e as Record<string, any>;
    const field = contextFieldOf(o);
    if (field) return void other.add(`${field[0]}.${field[1]}`);
    const keys = Object.keys(o);
    if (keys.length === 1 && COMPARISONS.includes(keys[0]!)) {
      const { left, right } = (o[keys[0]!] ?? {}) as { left?: unknown; right?: unknown };
      const pairs: [unknown, unknown][] = [[left, right], [right, left]];
      for (const [a, b] of pairs) {
        const f = contextFieldOf(a);
        const n = integerLiteral(b);
        if (f && n !== null) {
          const name = `${f[0]}.${f[1]}`;
          let set = literals.get(name);
          if (!set) literals.set(name, (set = new Set()));
          set.add(n);
          return;
        }
      }
    }
    for (const v of Object.values(o)) walk(v);
  };
  for (const p of policies) walk(p.conditions);
  const out = new Map<string, Map<string, number[]>>();
  for (const [name, set] of literals) {
    if (other.has(name)) continue;
    const [k, f] = [name.slice(0, name.indexOf('.')), name.slice(name.indexOf('.') + 1)];
    let m = out.get(k);
    if (!m) out.set(k, (m = new Map()));
    m.set(f, [...set].sort((a, b) => a - b));
  }
  return out;
}

/**
 * The representative of `v`'s class among sorted integer `literals`: `v` itself when it
 * equals one, else the smallest integer strictly between the same two neighbours (one
 * below the first, one above the last). `v` and its representative compare alike with
 * every literal, so a field read only by comparisons with them is answered alike.
 */
export function classOf(v: unknown, literals: number[]): unknown {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || literals.length === 0) return v;
  let below = 0; // how many literals are below v
  while (below < literals.length && literals[below]! < v) below++;
  if (below < literals.length && literals[below] === v) return v;
  return below === 0 ? literals[0]! - 1 : literals[below - 1]! + 1;
}

/** The tag names policies pass to `getTag` on any entity; null when one is not a literal string. */
export function tagValuesRead(policies: cedarTypes.PolicyJson[]): Set<string> | null {
  const names = new Set<string>();
  let dynamic = false;
  const walk = (e: unknown): void => {
    if (dynamic || typeof e !== 'object' || e === null) return;
    if (Array.isArray(e)) return e.forEach(walk);
    const o = e as Record<string, any>;
    if ('getTag' in o) {
      const v = o.getTag?.right;
      const keys = v && typeof v === 'object' ? Object.keys(v) : [];
      if (keys.length === 1 && typeof v.Value === 'string') names.add(v.Value);
      else dynamic = true;
    }
    for (const v of Object.values(o)) walk(v);
  };
  for (const p of policies) walk(p.conditions);
  return dynamic ? null : names;
}

/** What the policies of one preparsed set read (see `PartReads`); `texts` are their Cedar texts. */
export function partReadsOf(policies: cedarTypes.PolicyJson[], texts: string[]): PartReads {
  const contextKeys = contextAttributesRead(policies);
  const text = texts.join('\n');
  const attrs = attributesRead(policies);
  return {
    contextKeys,
    agentAttrs: new Set([...attrs.principal, ...attrs.any]),
    toolAttrs: new Set([...attrs.resource, ...attrs.any]),
    // through `context.args` when it is passed, or an entity literal naming the type (the
    // identifier, wherever it appears: `Writ :: Arguments` may be spaced or commented)
    args: contextKeys === null || contextKeys.has('args') || /(?<![A-Za-z0-9_])Arguments/.test(text),
    numArgs: contextKeys === null || contextKeys.has('num_args') || /NumericArguments/.test(text),
    contextFields: contextKeys === null ? new Map() : contextFieldsRead(policies),
    strings: stringsIn(policies),
    fieldClasses: contextKeys === null ? new Map() : fieldClassesRead(policies),
    tagValuesRead: tagValuesRead(policies),
  };
}

/** The entities of a request as `buildCedarRequest` makes them. */
type RequestEntity = { uid: { type: string; id: string }; attrs: Record<string, unknown>; parents: unknown[]; tags?: Record<string, unknown> };

/** The entities a set's policies can observe, with only the attributes they name (see `PartReads`). */
function sliceEntities(entities: unknown[], reads: PartReads): unknown[] {
  const out: unknown[] = [];
  for (const raw of entities) {
    const e = raw as RequestEntity;
    const type = e.uid.type;
    if (type === 'Writ::Arguments' && !reads.args) continue;
    if (type === 'Writ::NumericArguments' && !reads.numArgs) continue;
    // the agent and the tool are the only entities passed with attributes (request.ts)
    const keep = type === 'Writ::Agent' ? reads.agentAttrs : type === 'Writ::Tool' ? reads.toolAttrs : null;
    let attrs: Record<string, unknown> | null = null;
    if (keep) {
      for (const k in e.attrs) {
        if (keep.has(k)) continue;
        attrs = {};
        for (const j in e.attrs) if (keep.has(j)) attrs[j] = e.attrs[j];
        break;
      }
    }
    let parents: unknown[] | null = null;
    if (type === 'Writ::Agent' || type === 'Writ::Tool') {
      // its groups (agent groups, the tool's group): only those some policy names (see `PartReads.strings`)
      const named = (e.parents as { id: string }[]).filter((p) => reads.strings.has(p.id));
      if (named.length < e.parents.length) parents = named;
    }
    let tags: Record<string, unknown> | null = null;
    if (e.tags && reads.tagValuesRead !== null && (type === 'Writ::Arguments' || type === 'Writ::NumericArguments')) {
      // a tag only ever tested with `hasTag`: its value is unobservable (see `PartReads.tagValuesRead`)
      const blank = type === 'Writ::Arguments' ? '' : 0;
      for (const k in e.tags) {
        if (reads.tagValuesRead.has(k) || e.tags[k] === blank) continue;
        tags = {};
        for (const j in e.tags) tags[j] = reads.tagValuesRead.has(j) ? e.tags[j] : blank;
        break;
      }
    }
    if (attrs === null && parents === null && tags === null) out.push(e);
    else {
      const copy: RequestEntity = { ...e, attrs: attrs ?? e.attrs, parents: parents ?? e.parents };
      if (tags !== null) copy.tags = tags;
      out.push(copy);
    }
  }
  return out;
}

/** A record as the context holds it: a plain object that is not an entity or extension escape. */
function isPlainRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !('__entity' in v) && !('__extn' in v);
}

/**
 * The literal tag names policies pass to `context.<attr>.getTag/hasTag` (`attr` is
 * `args` or `num_args`); null if any is not a literal (then any argument may be read).
 */
export function tagsRead(policies: cedarTypes.PolicyJson[], attr: 'args' | 'num_args'): Set<string> | null {
  const names = new Set<string>();
  let dynamic = false;
  const isAttr = (e: any) => e && typeof e === 'object' && e['.'] && e['.'].attr === attr && e['.'].left && e['.'].left.Var === 'context';
  const walk = (e: unknown): void => {
    if (dynamic || typeof e !== 'object' || e === null) return;
    if (Array.isArray(e)) return e.forEach(walk);
    const o = e as Record<string, any>;
    for (const op of ['getTag', 'hasTag']) {
      const call = o[op];
      if (call && isAttr(call.left)) {
        const v = call.right?.Value;
        if (typeof v === 'string') names.add(v);
        else dynamic = true;
      }
    }
    for (const v of Object.values(o)) walk(v);
  };
  for (const p of policies) walk(p.conditions);
  return dynamic ? null : names;
}

/** The literal tag names policies pass to `context.num_args.getTag/hasTag`; null if any is not a literal. */
export function numericTagsRead(policies: cedarTypes.PolicyJson[]): Set<string> | null {
  return tagsRead(policies, 'num_args');
}

/**
 * The tool group a policy is confined to by its resource constraint (`resource in
 * Writ::ToolGroup::"g"`, `resource == Writ::Tool::"g.x"`, `resource is Writ::Tool in
 * Writ::ToolGroup::"g"`), or `*` when it can match any tool. Sound because a Tool's
 * only ancestor is the ToolGroup of its server (request.ts builds it so).
 */
export function toolGroupOf(policy: cedarTypes.PolicyJson): string {
  const r = policy.resource as { op: string; entity?: unknown; in?: { entity?: unknown } };
  const uid = (e: unknown): { type: string; id: string } | null => {
    if (!e || typeof e !== 'object') return null;
    const x = ('__entity' in (e as object) ? (e as { __entity: unknown }).__entity : e) as { type?: unknown; id?: unknown };
    return typeof x.type === 'string' && typeof x.id === 'string' ? { type: x.type, id: x.id } : null;
  };
  const groupOf = (e: { type: string; id: string } | null): string => {
    if (!e) return '*';
    if (e.type === 'Writ::ToolGroup') return e.id;
    if (e.type === 'Writ::Tool') return toolServer(e.id);
    return '*';
  };
  if (r.op === '==' || r.op === 'in') return groupOf(uid(r.entity));
  if (r.op === 'is' && r.in) return groupOf(uid(r.in.entity));
  return '*';
}

/**
 * The single tool a policy is confined to by its resource constraint (`resource ==
 * Writ::Tool::"t"`, `resource in Writ::Tool::"t"`, `resource is Writ::Tool in
 * Writ::Tool::"t"`), or null. Sound because a Tool has no descendants: `in` a Tool is
 * `==` that Tool (request.ts never gives a Tool a Tool parent).
 */
export function toolOf(policy: cedarTypes.PolicyJson): string | null {
  const r = policy.resource as { op: string; entity?: unknown; in?: { entity?: unknown } };
  const e = r.op === '==' || r.op === 'in' ? r.entity : r.op === 'is' ? r.in?.entity : undefined;
  if (!e || typeof e !== 'object') return null;
  const x = ('__entity' in (e as object) ? (e as { __entity: unknown }).__entity : e) as { type?: unknown; id?: unknown };
  return x.type === 'Writ::Tool' && typeof x.id === 'string' ? x.id : null;
}

/**
 * Past this many policies a set is split by tool group and named tool (design §7:
 * Cedar's cost grows with every policy it checks, about 10 us each in cedar-wasm;
 * a split set costs one preparse per part at load time, none per request).
 */
const PARTITION_MIN_POLICIES = 8;
/** ...unless the copies of the shared policies would cost more than this. */
const PARTITION_MAX_COPIES = 50_000;

/** The keys of the parts: prefixed, so that no group's name can read as a tool's. */
function toolKey(tool: string): string {
  return `tool:${tool}`;
}
function groupKey(group: string): string {
  return `group:${group}`;
}

/**
 * Splits a set into parts that each hold every policy that can match a tool: for a
 * group `g`, the group-independent policies and those confined to `g`; for a tool `t`
 * that some policy names, those and the ones confined to `t`. `*` holds the
 * group-independent ones (tools of groups no policy names).
 */
function partitionByTool(json: Record<string, cedarTypes.PolicyJson>): Map<string, string[]> | null {
  const ids = Object.keys(json);
  if (ids.length < PARTITION_MIN_POLICIES) return null;
  const common: string[] = [];
  const byGroup = new Map<string, string[]>();
  const byTool = new Map<string, string[]>();
  for (const id of ids) {
    const tool = toolOf(json[id]!);
    if (tool !== null) {
      byTool.set(tool, [...(byTool.get(tool) ?? []), id]);
      if (!byGroup.has(toolServer(tool))) byGroup.set(toolServer(tool), []);
      continue;
    }
    const g = toolGroupOf(json[id]!);
    if (g === '*') common.push(id);
    else byGroup.set(g, [...(byGroup.get(g) ?? []), id]);
  }
  if (byGroup.size === 0) return null;
  const out = new Map<string, string[]>([['*', common]]);
  let copies = 0;
  for (const [g, own] of byGroup) {
    out.set(groupKey(g), [...common, ...own]);
    copies += common.length + own.length;
  }
  for (const [t, own] of byTool) {
    out.set(toolKey(t), [...out.get(groupKey(toolServer(t)))!, ...own]);
    copies += out.get(toolKey(t))!.length;
  }
  return copies > PARTITION_MAX_COPIES ? null : out;
}

/** `@approvals("N")` is a whole number 1..10; `@four_eyes` is "true" or "false" (README, Approvals). */
function checkEscalationAnnotations(text: string, base: number, id: string, ann: Record<string, string>): void {
  const at = (name: string, message: string) => {
    const i = text.indexOf(`@${name}`, base);
    throw invalid(`policy \`${id}\`: ${message}`, [located(text, { severity: 'error', policy_id: id, message }, i >= 0 ? i : null, i >= 0 ? i + name.length + 1 : null)]);
  };
  if (ann.approvals !== undefined && !/^([1-9]|10)$/.test(ann.approvals)) at('approvals', '@approvals must be a whole number from 1 to 10');
  if (ann.four_eyes !== undefined && ann.four_eyes !== 'true' && ann.four_eyes !== 'false') at('four_eyes', '@four_eyes must be "true" or "false"');
}

function invalid(message: string, diagnostics: PolicyDiagnostic[]): InvalidRequestError {
  return new InvalidRequestError(message, { diagnostics }, 'invalid_policy');
}

/** The part of a split set that holds every policy that can match `resource` (see `partitionByTool`). */
function partitionFor(partitions: Map<string, string>, resource: { type: string; id: string }): string {
  if (resource.type !== 'Writ::Tool') return partitions.get('*')!;
  return partitions.get(toolKey(resource.id)) ?? partitions.get(groupKey(toolServer(resource.id))) ?? partitions.get('*')!;
}

/** How many decisions `PolicyEngine` remembers at most, in two generations (each about 1 KB of call text). */
const MEMO_ENTRIES = 4096;

/** What the engine reports when Cedar trapped and its instance was replaced. */
export interface EngineTrap {
  /** what was being done: `evaluate`, `partial evaluation`, `load` */
  operation: string;
  message: string;
}

/** A throw from inside Cedar (not one of its `failure` answers): the instance is suspect. */
function trapMessage(err: unknown): string {
  return String((err as Error)?.message ?? err).slice(0, 300);
}

/**
 * The Cedar engine. Policy sets are parsed and validated once, preparsed into
 * cedar-wasm's cache under their version id, and evaluated with
 * `statefulIsAuthorized`: no policy text is parsed on the request path.
 *
 * Any throw from inside Cedar is treated as a trap that may have broken its
 * WebAssembly instance: the instance is discarded and a new one created
 * (./cedar-runtime.ts), the schema and every loaded set preparsed into it again, and
 * the request that hit it denied. The instance is never used again after a trap.
 * Several engines in one process share the instance; each notices a replacement (the
 * generation changes) and preparses its sets again before its next use.
 */
export class PolicyEngine {
  private current: LoadedPolicySet | null = null;
  private readonly loaded = new Map<string, LoadedPolicySet>();
  /** per loaded version: the preparsed sets (id -> policies) to preparse again after a reset */
  private readonly preparsed = new Map<string, [string, Record<string, string>][]>();
  private generation = -1;
  readonly limits: ComplexityLimits;
  /** called after a trap, once the new instance is ready (Writ audits it) */
  onTrap: ((trap: EngineTrap) => void) | null = null;
  /** how many traps this engine has recovered from */
  traps = 0;

  /** worker threads that run the request-path evaluation (`evaluateAsync`); null: this thread */
  readonly pool: CedarPool | null;

  constructor(options: { limits?: Partial<ComplexityLimits>; workers?: number; workerTimeoutMs?: number } = {}) {
    this.limits = { ...DEFAULT_COMPLEXITY_LIMITS, ...options.limits };
    this.ensureInstance();
    this.pool = options.workers ? new CedarPool(options.workers, options.workerTimeoutMs ?? 2000) : null;
  }

  /** Stops the policy workers, if any. */
  async close(): Promise<void> {
    await this.pool?.close();
  }

  /** Preparses the schema and the loaded sets into the current instance when it is new to this engine. */
  private ensureInstance(): void {
    for (let attempt = 0; this.generation !== cedarGeneration(); attempt++) {
      const gen = cedarGeneration();
      const c = cedarNow();
      try {
        const sch = c.preparseSchema(SCHEMA_NAME, WRIT_SCHEMA);
        if (sch.type !== 'success') throw new Error(`the built-in schema does not parse: ${sch.errors.map((e) => e.message).join('; ')}`);
        for (const [version, sets] of this.preparsed) {
          try {
            for (const [id, parts] of sets) c.preparsePolicySet(id, { staticPolicies: parts });
          } catch (err) {
            // this set traps Cedar even to preparse: forget it (evaluating it now fails, and fails closed)
            this.preparsed.delete(version);
            this.loaded.delete(version);
            throw err;
          }
        }
        this.generation = gen;
      } catch (err) {
        if (attempt >= 3 || /built-in schema/.test((err as Error).message)) throw err;
        resetCedar();
      }
    }
  }

  /** After a throw from inside Cedar: a new instance, everything preparsed again. */
  private recover(operation: string, err: unknown): EngineTrap {
    this.forget();
    resetCedar();
    this.ensureInstance();
    this.traps += 1;
    const trap = { operation, message: trapMessage(err) };
    try {
      this.onTrap?.(trap);
    } catch {
      // reporting never changes the answer
    }
    return trap;
  }

  /**
   * Validates and preparses `text` without making it active (see `activate`): the
   * caller stores it first. Throws `invalid_policy` / `policy_too_complex`.
   */
  prepare(text: string, held = false): LoadedPolicySet {
    const version = policyVersion(text);
    // loaded for good (a set about to be made active): a holder's `letGo` leaves it loaded
    if (!held) {
      const h = this.held.get(version);
      if (h) h.keep = true;
    }
    const known = this.loaded.get(version);
    if (known) return known;
    this.ensureInstance();
    const gen = cedarGeneration();
    try {
      return this.build(text, version);
    } catch (err) {
      if (err instanceof InvalidRequestError) throw err;
      // a trap while loading: the instance is replaced, and the set refused
      if (cedarGeneration() === gen) this.recover('load', err);
      this.preparsed.delete(version);
      throw tooComplex('(the set)', `Cedar failed while loading it (${trapMessage(err)})`, { limit: 'trial', step: 'load' });
    }
  }

  private build(text: string, version: string): LoadedPolicySet {
    const c = cedarNow();
    const checked = checkPolicyText(text, this.limits);
    const sets: [string, Record<string, string>][] = [[version, checked.parts]];
    let partitions: Map<string, string> | null = null;
    const readsOf = (ids: string[]) => partReadsOf(ids.map((id) => checked.json[id]!), ids.map((id) => checked.parts[id]!));
    const partReads = new Map<string, PartReads>([[version, readsOf(checked.ids)]]);
    const groups = partitionByTool(checked.json);
    if (groups) {
      partitions = new Map();
      for (const [g, ids] of groups) {
        const setId = `${version}:${g}`; // g is `*`, `group:…` or `tool:…`
        sets.push([setId, Object.fromEntries(ids.map((id) => [id, checked.parts[id]!]))]);
        partitions.set(g, setId);
        partReads.set(setId, readsOf(ids));
      }
    }
    for (const [id, parts] of sets) {
      const r = c.preparsePolicySet(id, { staticPolicies: parts });
      if (r.type !== 'success') throw invalid('the policy set does not parse', r.errors.map((e) => fromCedar(text, null, e)));
    }
    for (const [id, parts] of sets) this.pool?.load(id, parts);
    const set: LoadedPolicySet = {
      version,
      text,
      policyIds: checked.ids,
      warnings: checked.warnings,
      annotations: checked.annotations,
      readsArgs: /\b(num_)?args\b/.test(text),
      mentionsApproval: /\bapproval\b/.test(text),
      mentionsBreakGlass: /\bbreak_glass\b/.test(text),
      mentionsPresence: /\bowner_present\b/.test(text),
      parts: checked.parts,
      contextKeys: contextAttributesRead(Object.values(checked.json)),
      numericTagsRead: /\bnum_args\b/.test(text) ? numericTagsRead(Object.values(checked.json)) : false,
      stringTagsRead: /\bargs\b/.test(text) ? tagsRead(Object.values(checked.json), 'args') : false,
      partitions,
      partReads,
    };
    this.preparsed.set(version, sets);
    this.loaded.set(version, set);
    return set;
  }

  /** Makes a prepared set the active one. */
  activate(set: LoadedPolicySet): void {
    this.current = set;
  }

  /**
   * Sets held for a while and then let go (a simulated candidate, a shadow candidate):
   * how many holders each has, and whether it must stay loaded after them (it was
   * loaded before the first holder came, or `prepare`d meanwhile, as a live set is).
   */
  private readonly held = new Map<string, { count: number; keep: boolean }>();

  /**
   * `prepare`, for a set held until `letGo`: then, unless something else loaded it too
   * or it is the active set, it is unloaded (`unload`). Without this every set ever
   * simulated would stay preparsed in Cedar and in every worker.
   */
  hold(text: string): LoadedPolicySet {
    const version = policyVersion(text);
    const h = this.held.get(version);
    if (h) {
      h.count += 1;
      return this.prepare(text, true);
    }
    const keep = this.loaded.has(version);
    const set = this.prepare(text, true);
    this.held.set(version, { count: 1, keep });
    return set;
  }

  /** Ends one `hold` of `version`. */
  letGo(version: string): void {
    const h = this.held.get(version);
    if (!h) return;
    h.count -= 1;
    if (h.count > 0) return;
    this.held.delete(version);
    if (!h.keep && this.current?.version !== version) this.unload(version);
  }

  /**
   * Forgets a loaded set (not the active one): its preparsed copies in this thread's
   * Cedar instance and in the workers are replaced by empty sets (Cedar has no unload;
   * preparsing again under an id replaces what it held), so their memory is released.
   */
  private unload(version: string): void {
    // its ids could be preparsed again with other content only after an unload: forget every answer
    this.forget();
    const sets = this.preparsed.get(version) ?? [];
    this.preparsed.delete(version);
    this.loaded.delete(version);
    if (this.generation === cedarGeneration()) {
      for (const [id] of sets) {
        try {
          cedarNow().preparsePolicySet(id, { staticPolicies: {} });
        } catch {
          // an instance that fails even this is replaced at the next use, without the set
        }
      }
    }
    for (const [id] of sets) this.pool?.unload(id);
  }

  /** How many sets are loaded (tests: simulated candidates do not pile up). */
  loadedCount(): number {
    return this.loaded.size;
  }

  /** Validates, preparses and makes `text` the active policy set. */
  load(text: string): LoadedPolicySet {
    const set = this.prepare(text);
    this.activate(set);
    return set;
  }

  /** Whether this version was loaded (so it passed every check). */
  isLoaded(version: string): boolean {
    return this.loaded.has(version);
  }

  activeOrNull(): LoadedPolicySet | null {
    return this.current;
  }

  active(): LoadedPolicySet {
    if (!this.current) throw new Error('no policy set is loaded');
    return this.current;
  }

  /**
   * The calls the engine makes for a request, as plain data: for the trial run of a new
   * set in a worker (./policy-trial.ts), with a made-up agent and tool and every fact set.
   */
  static trialCalls(): { full: Record<string, unknown>; partial: Record<string, unknown> } {
    const now = Date.UTC(2026, 0, 1);
    const task = {
      id: 'task_trial', agentId: 'spiffe://trial.invalid/agent', owner: 'op_trial', intent: 'trial', scope: { tools: ['*'], resources: [], destinations: [] },
      status: 'active' as const, createdAt: now, expiresAt: now + 60_000, endedAt: null, maxActions: 10, actionsUsed: 1, actionsReserved: 0, parentId: null, rootId: 'task_trial', depth: 0,
    };
    const agent = { id: task.agentId, name: 'trial', jwks: { keys: [] }, labels: ['trial'], status: 'active' as const, createdAt: now, createdBy: 'op_trial' };
    const request = buildCedarRequest({
      agent, task, now, withArgs: true, toolLabels: ['trial'], argsDigest: 'trial', chain: [],
      action: { tool: 'trial.tool', arguments: { text: 'trial', amount: 1 }, audience: 'mcp:trial', resource: 'trial:resource', destination: 'trial.invalid' },
    });
    return {
      full: { ...PolicyEngine.fullCall(request), validateRequest: false },
      partial: PolicyEngine.partialCall(request),
    };
  }

  private static fullCall(request: CedarRequest, context = request.context) {
    return {
      principal: request.principal,
      action: { type: 'Writ::Action', id: 'call' },
      resource: request.resource,
      context: context as cedarTypes.Context,
      entities: request.entities as cedarTypes.Entities,
    };
  }

  private static partialCall(request: CedarRequest) {
    const keys = new Set([...Object.keys(request.context), 'resource', 'destination']);
    const context: Record<string, unknown> = {};
    for (const k of keys) context[k] = { __extn: { fn: 'unknown', arg: `context.${k}` } };
    const entities = (request.entities as { uid: { type: string } }[]).filter((e) => e.uid.type === 'Writ::Agent' || e.uid.type === 'Writ::Tool');
    return {
      principal: request.principal,
      action: { type: 'Writ::Action', id: 'call' },
      resource: request.resource,
      context: context as cedarTypes.Context,
      entities: entities as cedarTypes.Entities,
    };
  }

  /**
   * Whether any call of this tool by this agent could be allowed, whatever its
   * arguments, resource, destination, approvals or task facts: Cedar's partial
   * evaluation with every context value unknown. `deny` only when policy settles it
   * regardless (a tool no call can use); an error counts as `deny` (fail closed).
   */
  couldAllow(request: CedarRequest, set: LoadedPolicySet = this.active()): 'allow' | 'deny' | 'maybe' {
    this.ensureInstance();
    let answer;
    try {
      answer = cedarNow().isAuthorizedPartial({ ...PolicyEngine.partialCall(request), policies: { staticPolicies: set.parts } });
    } catch (err) {
      this.recover('partial evaluation', err);
      return 'deny';
    }
    if (answer.type !== 'residuals') return 'deny';
    if (answer.response.errored.length > 0 && answer.response.decision === null) return 'maybe';
    return answer.response.decision === 'deny' ? 'deny' : answer.response.decision === 'allow' ? 'allow' : 'maybe';
  }

  /**
   * The `statefulIsAuthorized` call for a request: only the context attributes the set
   * reads, against the preparsed part of the set that can match the tool. Public for the
   * benchmarks' raw limit, which must hand Cedar exactly what the engine does.
   */
  static statefulCall(request: CedarRequest, set: LoadedPolicySet): cedarTypes.StatefulAuthorizationCall {
    const setId = set.partitions ? partitionFor(set.partitions, request.resource) : set.version;
    const reads = set.partReads?.get(setId);
    const keys = reads ? reads.contextKeys : set.contextKeys;
    let context = request.context;
    if (keys) {
      context = {};
      for (const k of keys) {
        if (!(k in request.context)) continue;
        const v = request.context[k];
        const fields = reads?.contextFields.get(k);
        if (fields && isPlainRecord(v)) {
          const classes = reads!.fieldClasses.get(k);
          const r: Record<string, unknown> = {};
          for (const f of fields) {
            if (!Object.hasOwn(v, f)) continue;
            const literals = classes?.get(f);
            r[f] = literals ? classOf(v[f], literals) : v[f];
          }
          context[k] = r;
        } else context[k] = v;
      }
    }
    return {
      principal: request.principal,
      action: { type: 'Writ::Action', id: 'call' },
      resource: request.resource,
      context: context as cedarTypes.Context,
      entities: (reads ? sliceEntities(request.entities, reads) : request.entities) as cedarTypes.Entities,
      preparsedPolicySetId: setId,
      validateRequest: false,
    };
  }

  /**
   * Evaluates one request against a loaded set. Cedar skips a policy whose
   * evaluation errors, which for a `forbid` would mean allowing: so any error
   * turns the answer into a deny (fail closed). A trap denies too. `memo: false` asks
   * Cedar even when the answer is remembered, and keeps nothing (what Cedar itself costs:
   * the benchmarks' raw limit).
   */
  evaluate(request: CedarRequest, set: LoadedPolicySet = this.active(), options: { memo?: boolean } = {}): Evaluation {
    const call = PolicyEngine.statefulCall(request, set);
    const useMemo = options.memo !== false;
    const key = useMemo ? JSON.stringify(call) : '';
    const known = useMemo ? this.recall(key) : null;
    if (known) return known;
    const epoch = this.memoEpoch;
    this.ensureInstance();
    let answer;
    try {
      answer = cedarNow().statefulIsAuthorized(call);
    } catch (err) {
      const trap = this.recover('evaluate', err);
      return { decision: 'deny', policies: [], errors: [{ policy_id: '', message: `the policy engine failed (${trap.message}); it was replaced` }] };
    }
    const evaluation = PolicyEngine.interpret(answer);
    return useMemo ? this.remember(key, evaluation, set, epoch) : evaluation;
  }

  /**
   * Decisions by the exact text of the call Cedar was given (`statefulCall`: the preparsed
   * set's id, which is its content hash, and every value the set's policies can observe).
   * Cedar is pure, so the same text always gets the same answer. Values policy reads only
   * through comparisons with literals are passed as their class (`PartReads.fieldClasses`,
   * `tagValuesRead`), so the text repeats across requests of one agent, tool and target
   * although counters and argument values change. Only answers without errors are kept:
   * an error or a trap is evaluated again every time. Bounded by two generations of
   * MEMO_ENTRIES / 2: when the young one is full it becomes the old one and the old one is
   * dropped; an answer found in the old one moves to the young one (so what is used stays).
   * (Not a Map dropping its first key: V8 then scans the deleted entries on each drop.)
   */
  private memo = new Map<string, Evaluation>();
  private memoOld = new Map<string, Evaluation>();
  /** how many evaluations the memo answered, and how many went to Cedar */
  memoHits = 0;
  memoMisses = 0;

  private recall(key: string): Evaluation | null {
    let e = this.memo.get(key);
    if (!e) {
      e = this.memoOld.get(key);
      if (!e) {
        this.memoMisses += 1;
        return null;
      }
      this.keep(key, e);
    }
    this.memoHits += 1;
    // a copy: the caller may keep or change its arrays
    return { decision: e.decision, policies: [...e.policies], errors: [] };
  }

  /**
   * Bumped when a set is unloaded or the instance replaced: an answer computed across
   * that (perhaps by an emptied set under the same id) is not kept.
   */
  private memoEpoch = 0;

  private remember(key: string, e: Evaluation, set: LoadedPolicySet, epoch: number): Evaluation {
    if (e.errors.length > 0 || epoch !== this.memoEpoch || this.loaded.get(set.version) !== set) return e;
    this.keep(key, { decision: e.decision, policies: [...e.policies], errors: [] });
    return e;
  }

  private keep(key: string, e: Evaluation): void {
    if (this.memo.size >= MEMO_ENTRIES / 2) {
      this.memoOld = this.memo;
      this.memo = new Map();
    }
    this.memo.set(key, e);
  }

  /** Forgets every remembered answer (a set unloaded, the instance replaced). */
  private forget(): void {
    this.memo = new Map();
    this.memoOld = new Map();
    this.memoEpoch += 1;
  }

  private static interpret(answer: cedarTypes.AuthorizationAnswer): Evaluation {
    if (answer.type !== 'success') {
      return { decision: 'deny', policies: [], errors: answer.errors.map((e) => ({ policy_id: '', message: e.message })) };
    }
    const errors = answer.response.diagnostics.errors.map((e) => ({ policy_id: e.policyId, message: e.error.message }));
    const decision = errors.length > 0 ? 'deny' : answer.response.decision;
    return { decision, policies: answer.response.diagnostics.reason, errors };
  }

  /**
   * `evaluate` on a policy worker when the engine has them (else on this thread): same
   * answer, same fail-closed rules (an error or a trap inside Cedar denies). A worker
   * that fails, exits or does not answer in time throws 503 `policy_unavailable`: the
   * caller records nothing and allows nothing.
   *
   * `inline`: the caller has no other request in flight. Then, when no policy worker has
   * a call queued either, the evaluation runs on this thread: the hop to a worker (a copy
   * of the call each way and a thread wake-up) would only add CPU and latency while this
   * thread waits. Under load the workers take it, so both cores decide.
   */
  async evaluateAsync(request: CedarRequest, set: LoadedPolicySet = this.active(), options: { inline?: boolean } = {}): Promise<Evaluation> {
    if (!this.pool || (options.inline && this.pool.idle())) return this.evaluate(request, set);
    const key = JSON.stringify(PolicyEngine.statefulCall(request, set));
    const known = this.recall(key);
    if (known) return known;
    const epoch = this.memoEpoch;
    let got: PoolAnswer;
    try {
      got = await this.pool.evaluateText(key);
    } catch (err) {
      if (err instanceof CedarPoolError) throw new UnavailableError(`the policy engine did not answer: ${err.message}`, undefined, 'policy_unavailable');
      throw err;
    }
    if ('trap' in got) {
      this.traps += 1;
      try {
        this.onTrap?.({ operation: 'evaluate', message: got.trap });
      } catch {
        // reporting never changes the answer
      }
      return { decision: 'deny', policies: [], errors: [{ policy_id: '', message: `the policy engine failed (${got.trap}); it was replaced` }] };
    }
    return this.remember(key, PolicyEngine.interpret(got.answer), set, epoch);
  }
}
