import { useState } from 'preact/hooks';
import { get, post, query } from './api.js';
import { hasRole, type Live, type Me } from './app.js';
import { ErrorBox, Field, html, JsonTree, Loading, StatusBadge, useLoad, when } from './ui.js';

/** Tasks (issue 16 item 3): the list, and one task with its tree, timeline and revoke. */
export function TaskList({ me }: { me: Me }) {
  const [status, setStatus] = useState('');
  const [agent, setAgent] = useState('');
  const { data, error } = useLoad(() => get(`/v1/tasks${query({ status, agent_id: agent, limit: 200 })}`), [status, agent]);
  const tasks: any[] = (data as any)?.tasks ?? [];
  return html`<section>
    <div class="bar">
      <h1>Tasks</h1>
      <label class="inline">State <select value=${status} onChange=${(e: any) => setStatus(e.currentTarget.value)}>
        ${['', 'active', 'completed', 'revoked', 'expired'].map((s) => html`<option value=${s}>${s || 'any'}</option>`)}
      </select></label>
      <label class="inline">Agent <input value=${agent} size="12" onChange=${(e: any) => setAgent(e.currentTarget.value.trim())} /></label>
    </div>
    <${ErrorBox} error=${error} />
    ${data === undefined && !error ? html`<${Loading} />` : null}
    <div class="table-wrap"><table class="list" id="task-list">
      <thead><tr><th>Task</th><th>State</th><th>Agent</th><th>Owner</th><th>Budget used</th><th>Intent</th><th>Expires</th></tr></thead>
      <tbody>${tasks.map(
        (t) => html`<tr key=${t.id}>
          <td><a href=${`#/tasks/${encodeURIComponent(t.id)}`}><code>${t.id}</code></a>${t.parent_id ? html` <span class="muted">(delegated)</span>` : null}</td>
          <td><${StatusBadge} status=${t.status} /></td>
          <td><code>${t.agent_id}</code></td>
          <td>${t.owner}</td>
          <td>${t.actions_used} / ${t.max_actions}${t.actions_reserved ? html` <span class="muted">(+${t.actions_reserved} reserved)</span>` : null}</td>
          <td class="intent">${t.intent}</td>
          <td>${when(t.expires_at)}</td>
        </tr>`,
      )}</tbody>
    </table></div>
    ${data !== undefined && tasks.length === 0 ? html`<p class="muted">No tasks.</p>` : null}
    ${hasRole(me, 'requester') ? html`<p class="muted">Tasks are created through the API or <code>writ task create</code>.</p>` : null}
  </section>`;
}

function Tree({ node }: { node: any }): any {
  return html`<li>
    <a href=${`#/tasks/${encodeURIComponent(node.id)}`}><code>${node.id}</code></a> <${StatusBadge} status=${node.status} />
    <code>${node.agent_id}</code> <span class="muted">${node.actions_used}/${node.max_actions} used</span>
    <div class="intent">${node.intent}</div>
    ${node.children?.length ? html`<ul class="tree">${node.children.map((c: any) => html`<${Tree} node=${c} />`)}</ul>` : null}
  </li>`;
}

/** One line of the timeline, from the audit log (or, without audit rights, from the decisions). */
interface Event {
  at: string;
  kind: string;
  text: string;
  id?: string;
  data?: unknown;
}

function timelineFrom(detail: any, audit: any[] | null): Event[] {
  if (audit) {
    return audit.map((e) => ({
      at: e.ts,
      kind: e.type,
      id: e.decision_id ?? undefined,
      text: [e.data?.tool, e.data?.decision, e.data?.status, e.actor].filter((x) => typeof x === 'string' && x).join(' · '),
      data: e.data,
    }));
  }
  return (detail.decisions ?? []).map((d: any) => ({
    at: d.created_at,
    kind: `decision.${d.decision}`,
    id: d.id,
    text: [d.tool, d.outcome ? `outcome ${typeof d.outcome === 'string' ? d.outcome : JSON.stringify(d.outcome)}` : ''].filter(Boolean).join(' · '),
    data: { reasons: d.reasons, policies: d.policies },
  }));
}

export function TaskPage({ me, id, live }: { me: Me; id: string; live: Live }) {
  const auditor = hasRole(me, 'auditor');
  const { data, error, reload } = useLoad(async () => {
    const detail = await get(`/v1/tasks/${encodeURIComponent(id)}`);
    const audit = auditor ? (await get(`/v1/audit${query({ task_id: id, limit: 1000 })}`)).entries : null;
    return { detail, audit };
  }, [id, live.version]);
  const [reason, setReason] = useState('');
  const [revokeError, setRevokeError] = useState<unknown>(null);
  const [revoked, setRevoked] = useState<any>(null);
  const revoke = async () => {
    setRevokeError(null);
    try {
      setRevoked(await post(`/v1/tasks/${encodeURIComponent(id)}/revoke`, reason ? { reason } : {}));
      reload();
    } catch (err) {
      setRevokeError(err);
    }
  };
  if (error) return html`<section><h1>Task</h1><${ErrorBox} error=${error} /></section>`;
  if (!data) return html`<${Loading} />`;
  const t = (data as any).detail;
  const events = timelineFrom(t, (data as any).audit);
  return html`<section>
    <div class="bar"><h1>Task <code>${t.id}</code></h1><${StatusBadge} status=${t.status} /></div>
    <dl class="grid">
      <${Field} label="Intent"><span class="intent">${t.intent}</span><//>
      <${Field} label="Agent"><code>${t.agent_id}</code><//>
      <${Field} label="Owner">${t.owner}<//>
      <${Field} label="Budget used">${t.actions_used} of ${t.max_actions}<//>
      <${Field} label="Created">${when(t.created_at)}<//>
      <${Field} label="Expires">${when(t.expires_at)}<//>
      <${Field} label="Ended">${when(t.ended_at)}<//>
      <${Field} label="Scope"><${JsonTree} value=${t.scope} /><//>
    </dl>
    ${t.status === 'active' && hasRole(me, 'requester')
      ? html`<div class="review revoke">
          <label for="revoke-reason">Reason</label>
          <input id="revoke-reason" maxlength="1000" value=${reason} onInput=${(e: any) => setReason(e.currentTarget.value)} />
          <button class="danger" id="revoke" onClick=${revoke}>Revoke task</button>
        </div>`
      : null}
    ${revoked ? html`<p class="ok" role="status" id="revoked">Revoked; ended: ${revoked.ended.join(', ')}</p>` : null}
    <${ErrorBox} error=${revokeError} />
    <h2>Delegation tree</h2>
    <ul class="tree root">${t.tree ? html`<${Tree} node=${t.tree} />` : null}</ul>
    <h2>Timeline</h2>
    ${!auditor ? html`<p class="muted">Decisions only: the full timeline (approvals, consumes, outcomes) needs the auditor role.</p>` : null}
    <ol class="timeline" id="timeline">${events.map(
      (e) => html`<li>
        <span class="at">${when(e.at)}</span> <code class="kind">${e.kind}</code> <span>${e.text}</span>
        ${e.id && auditor ? html` <a href=${`#/audit/trace/${encodeURIComponent(e.id)}`}>trace</a>` : null}
        ${e.data ? html`<details><summary>details</summary><${JsonTree} value=${e.data} /></details>` : null}
      </li>`,
    )}</ol>
  </section>`;
}
