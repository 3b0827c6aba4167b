import type * as cedarTypes from '@cedar-policy/cedar-wasm/nodejs';
import { located, type PolicyDiagnostic } from './diagnostics.js';
import { tagsRead } from './engine.js';

/** A tool as `tools/list` (MCP) describes it: its arguments are `inputSchema` (JSON Schema). */
export interface ToolSchema {
  name: string;
  inputSchema?: unknown;
}

/**
 * The argument paths a tool's input schema allows, as policy reads them
 * (`context.args.getTag("a.b")`, src/policy/request.ts `flattenArguments`: nested keys
 * joined with `.`, array items by index). An object without `properties`, or with
 * `additionalProperties`, allows any key below it (`*`).
 */
export function argumentPatterns(schema: unknown): RegExp[] {
  const out: string[] = [];
  const esc = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const join = (prefix: string, seg: string) => (prefix ? `${prefix}\\.${seg}` : seg);
  const walk = (node: unknown, prefix: string, depth: number): void => {
    if (depth > 16 || !node || typeof node !== 'object') {
      out.push(prefix || '.+');
      return;
    }
    const s = node as { type?: unknown; properties?: unknown; items?: unknown; additionalProperties?: unknown; anyOf?: unknown; oneOf?: unknown; allOf?: unknown };
    let alternatives = false;
    for (const alt of [s.anyOf, s.oneOf, s.allOf]) {
      if (Array.isArray(alt)) for (const a of alt) (alternatives = true), walk(a, prefix, depth + 1);
    }
    const types = Array.isArray(s.type) ? s.type : s.type === undefined ? [] : [s.type];
    let shaped = alternatives;
    if (s.properties && typeof s.properties === 'object') {
      shaped = true;
      for (const [k, v] of Object.entries(s.properties)) walk(v, join(prefix, esc(k)), depth + 1);
      if (s.additionalProperties !== undefined && s.additionalProperties !== false) out.push(join(prefix, '.+'));
    } else if (types.includes('object')) {
      shaped = true;
      out.push(join(prefix, '.+'));
    }
    if (types.includes('array') || s.items !== undefined) {
      shaped = true;
      walk(s.items, join(prefix, '\\d+'), depth + 1);
    }
    const scalar = types.some((t) => t !== 'object' && t !== 'array');
    if ((scalar || !shaped) && prefix) out.push(prefix);
    if (!shaped && !prefix) out.push('.+');
  };
  walk(schema, '', 0);
  return [...new Set(out)].map((src) => new RegExp(`^${src}$`));
}

/**
 * Warnings for every argument a policy reads by a literal name (`getTag`/`hasTag` on
 * `context.args` or `context.num_args`) that no known tool's input schema has: most
 * often a typo, and then the policy never matches (a `forbid` that never fires).
 */
export function unknownArgumentWarnings(
  text: string,
  policies: { id: string; json: cedarTypes.PolicyJson; text: string; offset: number }[],
  tools: ToolSchema[],
): PolicyDiagnostic[] {
  const patterns = tools.flatMap((t) => argumentPatterns(t.inputSchema ?? {}));
  const out: PolicyDiagnostic[] = [];
  for (const p of policies) {
    const names = new Set<string>();
    for (const attr of ['args', 'num_args'] as const) for (const n of tagsRead([p.json], attr) ?? []) names.add(n);
    for (const name of names) {
      if (patterns.some((r) => r.test(name))) continue;
      const i = p.text.indexOf(JSON.stringify(name));
      const start = i >= 0 ? p.offset + i : null;
      out.push(
        located(
          text,
          { severity: 'warning', policy_id: p.id, message: `no known tool has an argument \`${name}\``, help: `the known tools: ${tools.map((t) => t.name).slice(0, 10).join(', ')}${tools.length > 10 ? ', ...' : ''}` },
          start,
          start === null ? null : start + JSON.stringify(name).length,
        ),
      );
    }
  }
  return out;
}
