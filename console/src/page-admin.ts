import { useState } from 'preact/hooks';
import { call, get, post } from './api.js';
import { hasRole, type Me } from './app.js';
import { ErrorBox, html, Loading, StatusBadge, useLoad, when } from './ui.js';

/** Agents, policies and operators (issue 16 item 6). */

export function AgentsPage({ me }: { me: Me }) {
  const admin = hasRole(me);
  const { data, error, reload } = useLoad(() => get('/v1/agents'), []);
  const [actionError, setActionError] = useState<unknown>(null);
  const disable = async (id: string) => {
    if (!confirm(`Disable agent ${id}? Its tasks are revoked at once.`)) return;
    setActionError(null);
    try {
      await post(`/v1/agents/${encodeURIComponent(id)}/disable`, {});
      reload();
    } catch (err) {
      setActionError(err);
    }
  };
  const agents: any[] = (data as any)?.agents ?? [];
  return html`<section>
    <div class="bar"><h1>Agents</h1></div>
    ${admin ? html`<${RegisterAgent} onDone=${reload} />` : null}
    <${ErrorBox} error=${error ?? actionError} />
    ${data === undefined && !error ? html`<${Loading} />` : null}
    <div class="table-wrap"><table class="list" id="agent-list">
      <thead><tr><th>Agent</th><th>Name</th><th>State</th><th>Labels</th><th>Keys</th><th>Registered</th>${admin ? html`<th></th>` : null}</tr></thead>
      <tbody>${agents.map(
        (a) => html`<tr key=${a.id}>
          <td><code>${a.id}</code></td><td>${a.name}</td><td><${StatusBadge} status=${a.status} /></td>
          <td>${(a.labels ?? []).map((l: string) => html`<span class="pill">${l}</span> `)}</td>
          <td>${(a.jwks?.keys ?? []).map((k: any) => html`<code class="pill">${k.kid ?? k.kty}</code> `)}</td>
          <td>${when(a.created_at)}</td>
          ${admin ? html`<td>${a.status === 'active' ? html`<button class="danger" onClick=${() => disable(a.id)}>Disable</button>` : null}</td>` : null}
        </tr>`,
      )}</tbody>
    </table></div>
  </section>`;
}

function RegisterAgent({ onDone }: { onDone: () => void }) {
  const [id, setId] = useState('');
  const [name, setName] = useState('');
  const [jwks, setJwks] = useState('');
  const [labels, setLabels] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [ok, setOk] = useState('');
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    let keys: unknown;
    try {
      keys = JSON.parse(jwks);
    } catch {
      setError({ code: 'invalid_json', message: 'the JWKS is not valid JSON' });
      return;
    }
    try {
      const l = labels.split(',').map((x) => x.trim()).filter(Boolean);
      const r = await post('/v1/agents', { id: id.trim(), name: name.trim() || id.trim(), jwks: keys, ...(l.length ? { labels: l } : {}) });
      setOk(r.id);
      setId('');
      setName('');
      setJwks('');
      onDone();
    } catch (err) {
      setError(err);
    }
  };
  return html`<details class="form-box"><summary>Register an agent</summary>
    <form class="form" onSubmit=${submit}>
      <label for="ag-id">Id (a SPIFFE id or a name)</label><input id="ag-id" required value=${id} onInput=${(e: any) => setId(e.currentTarget.value)} />
      <label for="ag-name">Name</label><input id="ag-name" value=${name} onInput=${(e: any) => setName(e.currentTarget.value)} />
      <label for="ag-jwks">Public keys (JWKS, as <code>writ agent keygen</code> prints it)</label>
      <textarea id="ag-jwks" class="code" required rows="5" value=${jwks} onInput=${(e: any) => setJwks(e.currentTarget.value)}></textarea>
      <label for="ag-labels">Labels (comma-separated)</label><input id="ag-labels" value=${labels} onInput=${(e: any) => setLabels(e.currentTarget.value)} />
      <div class="actions"><button type="submit">Register</button></div>
      ${ok ? html`<p class="ok" role="status">Registered <code>${ok}</code>.</p>` : null}
      <${ErrorBox} error=${error} />
    </form>
  </details>`;
}

function Diagnostics({ list }: { list: any[] }) {
  if (!list?.length) return null;
  return html`<ul class="diag-list" id="policy-diagnostics">${list.map(
    (d) => html`<li class=${d.severity}>
      <strong>${d.severity}</strong>${d.line ? html` at line ${d.line}${d.column ? `, column ${d.column}` : ''}` : null}${d.policy_id ? html` in <code>${d.policy_id}</code>` : null}: ${d.message}
      ${d.excerpt ? html`<pre>${d.excerpt}</pre>` : null}${d.help ? html`<div class="muted">${d.help}</div>` : null}
    </li>`,
  )}</ul>`;
}

export function PoliciesPage({ me }: { me: Me }) {
  const admin = hasRole(me);
  const { data, error, reload } = useLoad(() => call('GET', '/v1/policies').then((r) => ({ ...r.body, etag: r.headers.get('etag') })), []);
  const [text, setText] = useState<string | null>(null);
  const [check, setCheck] = useState<any>(null);
  const [saveError, setSaveError] = useState<unknown>(null);
  const [saved, setSaved] = useState<string>('');
  const p = data as any;
  const current = text ?? p?.policies ?? '';
  const validate = async () => {
    setSaveError(null);
    try {
      setCheck(await post('/policies/validate', { policies: current }));
    } catch (err) {
      setSaveError(err);
    }
  };
  const replace = async () => {
    setSaveError(null);
    setSaved('');
    try {
      const r = await call('PUT', '/v1/policies', { policies: current }, { 'if-match': p.etag ?? `"${p.version}"` });
      setSaved(r.body.version);
      setText(null);
      setCheck(null);
      reload();
    } catch (err: any) {
      setSaveError(err);
      if (err?.details?.diagnostics) setCheck({ ok: false, diagnostics: err.details.diagnostics });
    }
  };
  return html`<section>
    <div class="bar"><h1>Policies</h1>${p ? html`<span class="muted">version <code id="policy-version">${p.version}</code> · ${p.ids?.length ?? 0} policies</span>` : null}</div>
    <${ErrorBox} error=${error} />
    ${!p && !error ? html`<${Loading} />` : null}
    ${p
      ? html`<label for="policy-text">Cedar policy set${admin ? '' : ' (read-only)'}</label>
        <textarea id="policy-text" class="code" spellcheck="false" readonly=${!admin} value=${current} onInput=${(e: any) => (setText(e.currentTarget.value), setCheck(null))}></textarea>
        <div class="actions">
          <button class="secondary" id="policy-validate" onClick=${validate}>Validate</button>
          ${admin ? html`<button id="policy-replace" disabled=${text === null || (check && !check.ok)} onClick=${replace}>Replace the active policy</button>` : null}
          ${text !== null ? html`<button class="secondary" onClick=${() => (setText(null), setCheck(null))}>Discard the edit</button>` : null}
        </div>
        ${check ? html`<p class=${check.ok ? 'ok' : 'error'} id="policy-check">${check.ok ? `Valid: ${check.ids.length} policies${check.diagnostics.length ? ', with warnings' : ''}.` : 'Not valid: nothing would be stored.'}</p><${Diagnostics} list=${check.diagnostics} />` : null}
        ${saved ? html`<p class="ok" role="status" id="policy-saved">Active: version <code>${saved}</code>.</p>` : null}
        <${ErrorBox} error=${saveError} />
        ${p.history?.length
          ? html`<h2>History</h2><ol class="timeline">${p.history.map((h: any) => html`<li><span class="at">${when(h.set_at)}</span> <code>${h.version}</code> by <code>${h.set_by}</code>${h.diff ? html`<details><summary>diff</summary><pre>${h.diff}</pre></details>` : null}</li>`)}</ol>`
          : null}`
      : null}
  </section>`;
}

export function OperatorsPage({ me }: { me: Me }) {
  const admin = hasRole(me);
  const { data, error, reload } = useLoad(() => get('/v1/operators'), []);
  const [actionError, setActionError] = useState<unknown>(null);
  const disable = async (id: string) => {
    if (!confirm(`Disable operator ${id}? Its token stops working at once.`)) return;
    setActionError(null);
    try {
      await post(`/v1/operators/${encodeURIComponent(id)}/disable`, {});
      reload();
    } catch (err) {
      setActionError(err);
    }
  };
  const ops: any[] = (data as any)?.operators ?? [];
  return html`<section>
    <div class="bar"><h1>Operators</h1></div>
    <${ErrorBox} error=${error ?? actionError} />
    ${data === undefined && !error ? html`<${Loading} />` : null}
    <div class="table-wrap"><table class="list" id="operator-list">
      <thead><tr><th>Operator</th><th>Name</th><th>Roles</th><th>State</th><th>Token expires</th>${admin ? html`<th></th>` : null}</tr></thead>
      <tbody>${ops.map(
        (o) => html`<tr key=${o.id}>
          <td><code>${o.id}</code>${o.id === me.operator.id ? html` <span class="muted">(you)</span>` : null}</td><td>${o.name}</td>
          <td>${o.roles.map((r: string) => html`<span class="pill">${r}</span> `)}</td><td><${StatusBadge} status=${o.status} /></td><td>${when(o.expires_at)}</td>
          ${admin ? html`<td>${o.status !== 'disabled' && o.id !== me.operator.id ? html`<button class="danger" onClick=${() => disable(o.id)}>Disable</button>` : null}</td>` : null}
        </tr>`,
      )}</tbody>
    </table></div>
  </section>`;
}
