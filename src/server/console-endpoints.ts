import type { IncomingMessage } from 'node:http';
import { WritError } from '../core/errors.js';
import type { OperatorRecord } from '../core/types.js';
import { seqRangeForTime } from '../audit/evidence.js';
import { checkPolicyText } from '../policy/engine.js';
import type { Writ } from '../service/writ.js';
import { auditView, consoleAuditQuerySchema, consoleValidatePolicySchema, parse } from '../wire/index.js';
import { readJson, sendJson } from './http-io.js';
import type { AddRoute } from './routes-delegation.js';

/**
 * The two things the console needs that `/v1` does not answer as such (README "Console"):
 * - `GET /console/api/audit`: the audit log searched by tool, decision and time besides
 *   agent, task and type (admin, auditor: the `/v1/audit` roles). It reads the log through
 *   `listAudit` in pages, from the first entry at `since` (found by time, as the export does)
 *   to the last at `until`, and stops after `SCAN_MAX` entries: `next_after` says where to
 *   go on, so a search never holds the server for long;
 * - `POST /console/api/policies/validate`: a policy text checked as `PUT /v1/policies`
 *   checks it (complexity, parse, schema, annotations), answering its located diagnostics;
 *   nothing is stored.
 */
const SCAN_MAX = 20_000;
const PAGE = 1000;

export function registerConsoleEndpoints(writ: Writ, route: AddRoute, operatorOf: (req: IncomingMessage, change: boolean) => Promise<OperatorRecord>): void {
  route('GET', '/console/api/audit', async ({ req, res, url }) => {
    const op = await operatorOf(req, false);
    const q = parse(consoleAuditQuerySchema, Object.fromEntries(url.searchParams));
    writ.audit.requireAuditor(op);
    const limit = q.limit ?? 100;
    const range = q.since || q.until ? await seqRangeForTime(writ.store, q.since ? Date.parse(q.since) : null, q.until ? Date.parse(q.until) : null) : null;
    if ((q.since || q.until) && (!range || range.firstSeq > range.lastSeq)) return sendJson(res, 200, { entries: [], next_after: null, scanned: 0 });
    const prefix = q.tool?.endsWith('*') ? q.tool.slice(0, -1) : null;
    const toolMatches = (tool: unknown) => q.tool === undefined || (typeof tool === 'string' && (prefix !== null ? tool.startsWith(prefix) : tool === q.tool));
    let after = Math.max(q.after ?? 0, range ? range.firstSeq - 1 : 0);
    const last = range?.lastSeq ?? Number.MAX_SAFE_INTEGER;
    const found = [];
    let scanned = 0;
    let more = true;
    while (found.length < limit && scanned < SCAN_MAX) {
      const page = await writ.audit.listAudit(op, { taskId: q.task_id, agentId: q.agent_id, type: q.decision ? 'decision' : q.type, after, limit: PAGE });
      if (page.length === 0) {
        more = false;
        break;
      }
      for (const e of page) {
        if (e.seq > last) {
          more = false;
          break;
        }
        after = e.seq;
        scanned++;
        const data = e.data as Record<string, unknown>;
        if (!toolMatches(data.tool)) continue;
        if (q.decision && data.decision !== q.decision) continue;
        found.push(e);
        if (found.length >= limit) break;
      }
      if (!more || page.length < PAGE) {
        more = more && found.length >= limit;
        break;
      }
    }
    sendJson(res, 200, { entries: found.map(auditView), next_after: more || scanned >= SCAN_MAX ? after : null, scanned });
  });

  route('POST', '/console/api/policies/validate', async ({ req, res }) => {
    await operatorOf(req, true);
    const body = parse(consoleValidatePolicySchema, await readJson(req));
    try {
      const checked = checkPolicyText(body.policies);
      sendJson(res, 200, { ok: true, ids: checked.ids, diagnostics: checked.warnings });
    } catch (err) {
      if (!(err instanceof WritError) || err.status !== 400) throw err;
      const details = err.details as { diagnostics?: unknown[]; policy_id?: string } | undefined;
      const diagnostics = details?.diagnostics?.length
        ? details.diagnostics
        : [{ severity: 'error', policy_id: details?.policy_id ?? null, message: err.message, line: null, column: null, excerpt: null }];
      sendJson(res, 200, { ok: false, code: err.code, ids: [], diagnostics });
    }
  });
}
