import { useState } from 'preact/hooks';
import { call, get, query } from './api.js';
import { hasRole, type Me } from './app.js';
import { ErrorBox, Field, html, JsonTree, Loading, StatusBadge, useLoad, when } from './ui.js';

/**
 * Audit (issue 16 item 4): search by agent, task, tool, decision, type and time; the chain
 * and checkpoint status; export; and the trace of one decision (`#/audit/trace/<id>`), the
 * same steps in the same order as `writ audit trace` (both read GET /v1/audit/trace).
 */
const FIELDS = ['agent_id', 'task_id', 'tool', 'decision', 'type', 'since', 'until'] as const;
type Filters = Record<(typeof FIELDS)[number], string>;

/** `datetime-local` has no zone: read as UTC, as every time on these pages is shown. */
const toIso = (local: string) => (local ? `${local.length === 16 ? `${local}:00` : local}Z` : '');

export function AuditPage({ me }: { me: Me }) {
  const empty: Filters = { agent_id: '', task_id: '', tool: '', decision: '', type: '', since: '', until: '' };
  const [form, setForm] = useState<Filters>(empty);
  const [filters, setFilters] = useState<Filters>(empty);
  const [pages, setPages] = useState<any[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const search = async (f: Filters, after?: number) => {
    setBusy(true);
    setError(null);
    try {
      const r = await get(`/audit${query({ ...f, since: toIso(f.since), until: toIso(f.until), after, limit: 100 })}`);
      setPages((p) => (after === undefined ? [r] : [...p, r]));
      setFilters(f);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const { data: first } = useLoad(() => search(empty).then(() => true), []);
  const entries = pages.flatMap((p) => p.entries);
  const next = pages.length ? pages[pages.length - 1].next_after : null;
  const set = (k: keyof Filters) => (e: any) => setForm({ ...form, [k]: e.currentTarget.value });
  const exportHref = `/console/api/v1/audit/export${query({ since: toIso(filters.since), until: toIso(filters.until) })}`;
  return html`<section>
    <div class="bar"><h1>Audit</h1></div>
    <${ChainStatus} me=${me} />
    <form class="form filters" id="audit-search" onSubmit=${(e: Event) => (e.preventDefault(), search(form))}>
      <div class="row">
        <label>Agent <input value=${form.agent_id} onInput=${set('agent_id')} /></label>
        <label>Task <input value=${form.task_id} onInput=${set('task_id')} /></label>
        <label>Tool <input value=${form.tool} placeholder="payments.*" onInput=${set('tool')} /></label>
        <label>Decision <select value=${form.decision} onChange=${set('decision')}>${['', 'allow', 'deny', 'approval_required'].map((d) => html`<option value=${d}>${d || 'any'}</option>`)}</select></label>
        <label>Type <input value=${form.type} placeholder="decision, approval.reviewed, …" onInput=${set('type')} /></label>
        <label>Since (UTC) <input type="datetime-local" value=${form.since} onInput=${set('since')} /></label>
        <label>Until (UTC) <input type="datetime-local" value=${form.until} onInput=${set('until')} /></label>
      </div>
      <div class="actions">
        <button type="submit" disabled=${busy}>Search</button>
        <a class="button secondary" href=${exportHref} download="writ-audit.jsonl" id="export">Export (JSON lines${filters.since || filters.until ? ', this time range' : ''})</a>
      </div>
    </form>
    <${ErrorBox} error=${error} />
    ${first === undefined && !error ? html`<${Loading} />` : null}
    <div class="table-wrap"><table class="list" id="audit-list">
      <thead><tr><th>#</th><th>Time</th><th>Type</th><th>Actor</th><th>Task / agent</th><th>What</th></tr></thead>
      <tbody>${entries.map(
        (e: any) => html`<tr key=${e.seq}>
          <td>${e.seq}</td>
          <td>${when(e.ts)}</td>
          <td><code>${e.type}</code>${e.data?.decision ? html` <${StatusBadge} status=${e.data.decision} />` : null}</td>
          <td><code>${e.actor}</code></td>
          <td>${e.task_id ? html`<a href=${`#/tasks/${encodeURIComponent(e.task_id)}`}><code>${e.task_id}</code></a>` : null} ${e.agent_id ? html`<code>${e.agent_id}</code>` : null}</td>
          <td>${e.data?.tool ? html`<code>${e.data.tool}</code> ` : null}${e.decision_id ? html`<a href=${`#/audit/trace/${encodeURIComponent(e.decision_id)}`}>trace</a> ` : null}<details><summary>data</summary><${JsonTree} value=${e.data} /></details></td>
        </tr>`,
      )}</tbody>
    </table></div>
    ${pages.length && entries.length === 0 ? html`<p class="muted" id="audit-empty">No entries match.</p>` : null}
    ${next !== null ? html`<button class="secondary" disabled=${busy} onClick=${() => search(filters, next)}>More (after #${next})</button>` : null}
  </section>`;
}

function ChainStatus({ me }: { me: Me }) {
  const { data: cp, error: cpError, reload } = useLoad(() => get('/v1/audit/checkpoint').catch((e) => (e.code === 'checkpoint_not_found' ? null : Promise.reject(e))), []);
  const [report, setReport] = useState<any>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const verify = async () => {
    setBusy(true);
    setError(null);
    try {
      setReport(await get('/v1/audit/verify'));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const checkpoint = async () => {
    setError(null);
    try {
      await call('POST', '/v1/audit/checkpoints', {});
      reload();
    } catch (err) {
      setError(err);
    }
  };
  return html`<div class="card" id="chain-status">
    <h2>Chain and checkpoints</h2>
    <dl class="grid">
      <${Field} label="Latest checkpoint">${cp ? html`<span id="checkpoint-size">${cp.size} entries</span> · signed ${when(cp.created_at)}` : cp === null ? 'none yet' : '…'}<//>
      <${Field} label="Root hash">${cp?.root ? html`<code>${cp.root}</code>` : '—'}<//>
      <${Field} label="Chain">${report ? html`<span id="chain-result"><${StatusBadge} status=${report.ok ? 'ok' : 'failed'} /> ${report.entries} entries checked${report.ok ? '' : ` · first bad entry #${report.first_bad_seq}: ${report.problem}`}</span>` : html`<span class="muted">not verified in this view</span>`}<//>
    </dl>
    <div class="actions">
      <button class="secondary" id="verify-chain" disabled=${busy} onClick=${verify}>Verify the chain</button>
      ${hasRole(me, 'auditor') ? html`<button class="secondary" onClick=${checkpoint}>Sign a checkpoint now</button>` : null}
    </div>
    ${report ? html`<details><summary>Full report</summary><${JsonTree} value=${report} /></details>` : null}
    <${ErrorBox} error=${error ?? cpError} />
  </div>`;
}

export function TracePage({ id }: { id: string }) {
  const { data, error } = useLoad(() => get(`/v1/audit/trace/${encodeURIComponent(id)}`), [id]);
  const t = data as any;
  return html`<section>
    <div class="bar"><h1>Trace <code>${id}</code></h1><a href="#/audit">Back to the audit log</a></div>
    <${ErrorBox} error=${error} />
    ${!t && !error ? html`<${Loading} />` : null}
    ${t
      ? html`<p class="muted">The ${t.subject.kind}'s story in log order, as <code>writ audit trace ${id}</code> tells it. Each step's index proves it with <code>writ audit prove</code>.</p>
        <ol class="timeline" id="trace-steps">${t.steps.map(
          (s: any) => html`<li>
            <span class="at">#${s.index} · ${when(new Date(s.ts).toISOString())}</span> <code class="kind">${s.type}</code> <code>${s.actor}</code>
            <div>${s.summary}</div>
            <details><summary>entry</summary><${JsonTree} value=${s.entry?.data ?? s.entry} /></details>
          </li>`,
        )}</ol>`
      : null}
  </section>`;
}
