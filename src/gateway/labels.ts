import { matchPattern } from '../core/scope.js';
import type { GatewayConfig } from './config.js';

/** One entry of Writ's tool labels (`GET /v1/tool-labels`): a tool-name pattern and its labels. */
export interface ToolLabelEntry {
  pattern: string;
  labels: string[];
}

/** The labels a gateway configuration gives tools (`upstreams[].tools.<tool>.labels`), by namespaced tool name. */
export function configuredToolLabels(config: Pick<GatewayConfig, 'upstreams'>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const u of config.upstreams) {
    for (const [tool, settings] of Object.entries(u.tools)) if (settings.labels?.length) out.set(`${u.name}.${tool}`, settings.labels);
  }
  return out;
}

/**
 * The configured tools whose labels are not all in Writ. Policy sees only the labels
 * Writ holds (the union over the patterns a tool matches), never the configuration's,
 * so a label missing there is a rule that silently does not apply. Sorted by tool.
 */
export function labelsNotInWrit(wanted: Map<string, string[]>, writ: ToolLabelEntry[]): { tool: string; missing: string[] }[] {
  const out: { tool: string; missing: string[] }[] = [];
  for (const [tool, labels] of wanted) {
    const have = new Set<string>();
    for (const e of writ) if (matchPattern(e.pattern, tool)) for (const l of e.labels) have.add(l);
    const missing = [...new Set(labels)].filter((l) => !have.has(l)).sort();
    if (missing.length) out.push({ tool, missing });
  }
  return out.sort((a, b) => (a.tool < b.tool ? -1 : a.tool > b.tool ? 1 : 0));
}
