import { toOcsf } from '../audit/audit-export.js';
import { consistency, exportLines, inclusion, proofFile, seqRangeForTime, signCheckpoint } from '../audit/evidence.js';
import { formatTrace, traceDecision, traceTask } from '../audit/trace.js';
import { openNote, parseNoteVerifierKey } from '../audit/signed-note.js';
import { parseCheckpoint } from '../audit/tlog-checkpoint.js';
import { InvalidRequestError, NotFoundError } from '../core/errors.js';
import type { AuditCheckpointRecord } from '../store/store.js';
import type { Writ } from '../service/writ.js';
import { bearer, sendJson } from './http-io.js';
import type { AddRoute } from './routes-delegation.js';
import { checkpointsQuerySchema, consistencyQuerySchema, exportQuerySchema, inclusionQuerySchema, parse, traceQuerySchema } from '../wire/index.js';

function checkpointView(c: AuditCheckpointRecord, verifierKey: string) {
  const body = parseCheckpoint(openNote(c.note, [parseNoteVerifierKey(verifierKey)]).text);
  return { size: c.size, root: body.root.toString('base64'), origin: body.origin, created_at: new Date(c.createdAt).toISOString(), note: c.note };
}

/**
 * Audit evidence for investigators (operators with the admin or auditor role):
 * `GET /v1/audit/checkpoint` (latest signed C2SP checkpoint; signs one when none covers
 * the log yet), `GET /v1/audit/checkpoints?since=SIZE`, `GET /v1/audit/checkpoint-key`
 * (the note verifier key), `GET /v1/audit/proofs/inclusion?index=&size=`,
 * `GET /v1/audit/proofs/consistency?from=&to=`, `GET /v1/audit/proof/{decision id |
 * entry index}` (a `.tlog-proof` file), `GET /v1/audit/export?since=&until=&format=`
 * (JSON Lines, streamed) and `GET /v1/audit/trace/{decision id | task id}`.
 */
export function registerAuditEvidenceRoutes(writ: Writ, route: AddRoute): void {
  const auditor = async (req: Parameters<Parameters<AddRoute>[2]>[0]['req']) => {
    const op = await writ.identity.authenticateOperator(bearer(req));
    writ.audit.requireAuditor(op);
    return op;
  };

  route('GET', '/v1/audit/checkpoint-key', async ({ req, res }) => {
    await auditor(req);
    const ctx = writ.audit.evidenceContext();
    sendJson(res, 200, { note_key: ctx.signer.verifierKey, origin: ctx.origin });
  });

  route('GET', '/v1/audit/checkpoint', async ({ req, res }) => {
    await auditor(req);
    const ctx = writ.audit.evidenceContext();
    const head = await writ.store.auditHead();
    let latest = await writ.store.latestAuditCheckpoint();
    if (!latest || (head && latest.size < head.seq && ctx.now() - latest.createdAt > 60_000)) latest = await signCheckpoint(ctx);
    if (!latest) throw new NotFoundError('the audit log is empty', 'checkpoint_not_found');
    sendJson(res, 200, checkpointView(latest, ctx.signer.verifierKey));
  });

  route('GET', '/v1/audit/checkpoints', async ({ req, res, url }) => {
    await auditor(req);
    const q = parse(checkpointsQuerySchema, Object.fromEntries(url.searchParams));
    const ctx = writ.audit.evidenceContext();
    const list = await writ.store.listAuditCheckpoints(q.since ?? 0, q.limit ?? 100);
    sendJson(res, 200, { checkpoints: list.map((c) => checkpointView(c, ctx.signer.verifierKey)) });
  });

  const logSize = async () => (await writ.store.auditHead())?.seq ?? 0;

  route('GET', '/v1/audit/proofs/inclusion', async ({ req, res, url }) => {
    await auditor(req);
    const q = parse(inclusionQuerySchema, Object.fromEntries(url.searchParams));
    if (q.size > (await logSize())) throw new InvalidRequestError(`size ${q.size} is beyond the end of the log`, undefined, 'size_beyond_log');
    if (q.index >= q.size) throw new InvalidRequestError(`index ${q.index} is not below size ${q.size}`);
    sendJson(res, 200, await inclusion(writ.audit.evidenceContext(), q.index, q.size));
  });

  route('GET', '/v1/audit/proofs/consistency', async ({ req, res, url }) => {
    await auditor(req);
    const q = parse(consistencyQuerySchema, Object.fromEntries(url.searchParams));
    if (q.to > (await logSize())) throw new InvalidRequestError(`size ${q.to} is beyond the end of the log`, undefined, 'size_beyond_log');
    if (q.from > q.to) throw new InvalidRequestError(`size ${q.from} is larger than size ${q.to}`);
    sendJson(res, 200, await consistency(writ.audit.evidenceContext(), q.from, q.to));
  });

  route('GET', '/v1/audit/proof/{id}', async ({ req, res, params }) => {
    await auditor(req);
    const id = params[0]!;
    const entry = /^\d{1,15}$/.test(id)
      ? (await writ.store.listAudit({ after: Number(id), limit: 1 }))[0]
      : (await writ.store.listAudit({ decisionId: id, type: 'decision', limit: 1 }))[0];
    if (!entry || (/^\d+$/.test(id) && entry.seq !== Number(id) + 1)) throw new NotFoundError(`no audit entry \`${id.slice(0, 80)}\``, 'entry_not_found');
    const text = await proofFile(writ.audit.evidenceContext(), entry);
    if (!text) throw new NotFoundError('the audit log is empty', 'checkpoint_not_found');
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end(text);
  });

  route('GET', '/v1/audit/export', async ({ req, res, url }) => {
    await auditor(req);
    const q = parse(exportQuerySchema, Object.fromEntries(url.searchParams));
    const ctx = writ.audit.evidenceContext();
    const range = await seqRangeForTime(writ.store, q.since ?? null, q.until ?? null);
    res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' });
    if (!range) return void res.end();
    const product = { version: writ.audit.version, origin: ctx.origin };
    // Streamed with backpressure: an export can be millions of lines.
    const write = (line: string) => (res.write(`${line}\n`) ? Promise.resolve() : new Promise<void>((ok) => res.once('drain', () => ok())));
    try {
      for await (const line of exportLines(ctx, range, { verifierKey: ctx.signer.verifierKey })) {
        if (res.destroyed) return;
        if (q.format === 'ocsf') {
          if (!line.startsWith('{"actor":')) continue;
          await write(JSON.stringify(toOcsf(JSON.parse(line), product)));
        } else {
          await write(line);
        }
      }
      res.end();
    } catch {
      // The status line is gone already: cut the stream so the client sees it broke
      // (an export that ends early fails offline verification, it never passes short).
      res.destroy();
    }
  });

  route('GET', '/v1/audit/trace/{id}', async ({ req, res, params, url }) => {
    await auditor(req);
    const q = parse(traceQuerySchema, Object.fromEntries(url.searchParams));
    const id = await writ.audit.traceSubject(params[0]!);
    const trace = id.kind === 'task' ? await traceTask(writ.store, id.id) : await traceDecision(writ.store, id.id);
    if (!trace) throw new NotFoundError(`nothing in the audit log for \`${params[0]!.slice(0, 80)}\``, 'entry_not_found');
    if (q.format === 'text') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      return void res.end(formatTrace(trace));
    }
    sendJson(res, 200, trace);
  });
}
