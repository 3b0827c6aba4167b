import { useEffect, useState } from 'preact/hooks';
import { get, post, query } from './api.js';
import { hasRole, type Live, type Me } from './app.js';
import { ErrorBox, Field, html, JsonTree, Loading, StatusBadge, timeLeft, useLoad, useNow, when } from './ui.js';

/**
 * The approvals inbox (issue 16 item 2): pending approvals, newest first, each with what an
 * approver needs to judge it; approve or deny with a comment. The list reloads whenever the
 * server's event stream reports a change (a new approval, another approver's verdict).
 */
export function Inbox({ me, live }: { me: Me; live: Live }) {
  const canRead = hasRole(me, 'approver', 'auditor');
  const [status, setStatus] = useState('pending');
  const { data, error, reload } = useLoad(
    () => (canRead ? get(`/v1/approvals${query({ status, limit: 200 })}`) : Promise.resolve({ approvals: [] })),
    [status, live.version],
  );
  const now = useNow();
  if (!canRead) return html`<section><h1>Approvals</h1><p>Your roles (${me.operator.roles.join(', ')}) do not include reading approvals: an approver or an auditor does.</p></section>`;
  const list = [...((data as any)?.approvals ?? [])].sort((a: any, b: any) => Date.parse(b.created_at) - Date.parse(a.created_at));
  return html`<section>
    <div class="bar">
      <h1>Approvals</h1>
      <label class="inline">Show <select value=${status} onChange=${(e: any) => setStatus(e.currentTarget.value)}>
        ${['pending', 'approved', 'denied', 'expired', 'used', 'cancelled'].map((s) => html`<option value=${s}>${s}</option>`)}
      </select></label>
    </div>
    ${!hasRole(me, 'approver') ? html`<p class="note" id="read-only-note">Read-only: your role (${me.operator.roles.join(', ')}) can see approvals but not approve or deny them.</p>` : null}
    <${ErrorBox} error=${error} />
    ${data === undefined && !error ? html`<${Loading} />` : null}
    ${data !== undefined && list.length === 0 ? html`<p class="muted" id="inbox-empty">No ${status} approvals.</p>` : null}
    <ol class="cards">${list.map((a: any) => html`<li key=${a.id}><${ApprovalCard} a=${a} me=${me} now=${now} onDone=${reload} /></li>`)}</ol>
  </section>`;
}

function ApprovalCard({ a, me, now, onDone }: { a: any; me: Me; now: number; onDone: () => void }) {
  const [comment, setComment] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<any>(null);
  useEffect(() => setError(null), [a.id]);
  const review = async (verdict: 'approve' | 'deny') => {
    setBusy(true);
    setError(null);
    try {
      const r = await post(`/v1/approvals/${encodeURIComponent(a.id)}/${verdict}`, comment ? { comment } : {});
      setResult(r);
      setComment('');
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const canReview = hasRole(me, 'approver') && a.status === 'pending';
  return html`<article class="card approval" data-approval-id=${a.id}>
    <header>
      <h2><code class="tool">${a.tool}</code></h2>
      <${StatusBadge} status=${a.status} />
      ${a.status === 'pending' ? html`<span class="left">${timeLeft(a.expires_at, now)}</span>` : null}
    </header>
    <dl class="grid">
      <${Field} label="Agent"><code>${a.agent_id}</code><//>
      <${Field} label="Intent"><span class="intent">${a.task?.intent ?? '—'}</span><//>
      <${Field} label="Owner">${a.task?.owner ?? '—'}<//>
      <${Field} label="Task"><a href=${`#/tasks/${encodeURIComponent(a.task_id)}`}><code>${a.task_id}</code></a><//>
      <${Field} label="Delegation chain">${(a.delegation_chain ?? []).length ? html`<span class="chain">${a.delegation_chain.map((x: string, i: number) => html`${i ? ' → ' : ''}<code>${x}</code>`)}</span>` : '—'}<//>
      <${Field} label="Audience"><code>${a.audience}</code><//>
      <${Field} label="Resource">${a.resource ? html`<code>${a.resource}</code>` : '—'}<//>
      <${Field} label="Destination">${a.destination ? html`<code>${a.destination}</code>` : '—'}<//>
      <${Field} label="Asked by policy">${(a.policies ?? []).map((p: string) => html`<code class="pill">${p}</code> `)}<span class="muted"> (version ${a.policy_version})</span><//>
      <${Field} label="Quorum"><span class="quorum">${a.approvals} of ${a.quorum}</span>${a.four_eyes ? html` <span class="pill">four eyes</span>` : null}<//>
      <${Field} label="Asked at">${when(a.created_at)}<//>
    </dl>
    <div class="args">
      <h3>Arguments <span class="muted">(canonical, digest <code>${String(a.args_digest).slice(0, 16)}…</code>)</span></h3>
      <${JsonTree} value=${a.arguments} />
      <details class="raw"><summary>Canonical JSON</summary><pre>${a.canonical_arguments}</pre></details>
    </div>
    ${(a.reviews ?? []).length
      ? html`<div class="reviews"><h3>Reviews</h3><ul>${a.reviews.map((r: any) => html`<li><${StatusBadge} status=${r.verdict} /> <code>${r.approver}</code> ${when(r.at)}${r.comment ? html`: <q>${r.comment}</q>` : null}</li>`)}</ul></div>`
      : null}
    ${canReview
      ? html`<div class="review">
          <label for=${`c-${a.id}`}>Comment</label>
          <textarea id=${`c-${a.id}`} class="comment" maxlength="4096" rows="2" value=${comment} onInput=${(e: any) => setComment(e.currentTarget.value)}></textarea>
          <div class="actions">
            <button class="approve" disabled=${busy} onClick=${() => review('approve')}>Approve</button>
            <button class="deny danger" disabled=${busy} onClick=${() => review('deny')}>Deny</button>
          </div>
        </div>`
      : null}
    ${result ? html`<p class="ok" role="status">Recorded: ${result.status} (${result.approvals} of ${result.quorum}).</p>` : null}
    <${ErrorBox} error=${error} />
  </article>`;
}
