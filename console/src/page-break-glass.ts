import { useState } from 'preact/hooks';
import { get, post, query } from './api.js';
import { hasRole, type Live, type Me } from './app.js';
import { ErrorBox, Field, html, Loading, StatusBadge, timeLeft, useLoad, useNow, when } from './ui.js';

/**
 * Break-glass (issue 16 item 5): start one with a justification (an admin), confirm one
 * another admin started, end an active one, and the review queue of ended ones. The
 * banner on every page follows the event stream (app.ts).
 */
export function BreakGlassPage({ me, live }: { me: Me; live: Live }) {
  const admin = hasRole(me);
  const [state, setState] = useState('active');
  const { data, error, reload } = useLoad(() => get(`/v1/break-glass${query({ state, limit: 200 })}`), [state, live.version]);
  const now = useNow();
  const list: any[] = (data as any)?.break_glass ?? [];
  return html`<section>
    <div class="bar">
      <h1>Break-glass</h1>
      <label class="inline">Show <select value=${state} onChange=${(e: any) => setState(e.currentTarget.value)}>
        ${[['active', 'active'], ['pending', 'awaiting confirmation'], ['unreviewed', 'review queue'], ['ended', 'ended']].map(([v, l]) => html`<option value=${v}>${l}</option>`)}
      </select></label>
    </div>
    ${admin ? html`<${StartForm} onDone=${reload} />` : html`<p class="muted">Only an admin starts, confirms, ends and reviews break-glass; auditors see it.</p>`}
    <${ErrorBox} error=${error} />
    ${data === undefined && !error ? html`<${Loading} />` : null}
    ${data !== undefined && list.length === 0 ? html`<p class="muted" id="break-glass-empty">None.</p>` : null}
    <ol class="cards">${list.map((b) => html`<li key=${b.id}><${BreakGlassCard} b=${b} me=${me} now=${now} onDone=${reload} /></li>`)}</ol>
  </section>`;
}

function StartForm({ onDone }: { onDone: () => void }) {
  const [target, setTarget] = useState<'agent_id' | 'task_id'>('agent_id');
  const [id, setId] = useState('');
  const [justification, setJustification] = useState('');
  const [tools, setTools] = useState('');
  const [minutes, setMinutes] = useState('15');
  const [error, setError] = useState<unknown>(null);
  const [started, setStarted] = useState<any>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      const r = await post('/v1/break-glass', {
        [target]: id.trim(),
        justification,
        scope: { tools: tools.split(',').map((t) => t.trim()).filter(Boolean) },
        duration_seconds: Math.round(Number(minutes) * 60),
      });
      setStarted(r);
      setJustification('');
      onDone();
    } catch (err) {
      setError(err);
    }
  };
  return html`<details class="form-box"><summary>Start break-glass</summary>
    <form class="form" id="break-glass-start" onSubmit=${submit}>
      <label class="inline"><select value=${target} onChange=${(e: any) => setTarget(e.currentTarget.value)}><option value="agent_id">Agent</option><option value="task_id">Task</option></select>
        <input required value=${id} onInput=${(e: any) => setId(e.currentTarget.value)} /></label>
      <label for="bg-why">Justification (20 characters or more; it is audited)</label>
      <textarea id="bg-why" required minlength="20" maxlength="4096" rows="3" value=${justification} onInput=${(e: any) => setJustification(e.currentTarget.value)}></textarea>
      <label for="bg-tools">Tools (patterns, comma-separated)</label>
      <input id="bg-tools" required placeholder="payments.*, github.merge" value=${tools} onInput=${(e: any) => setTools(e.currentTarget.value)} />
      <label for="bg-minutes">Duration (minutes)</label>
      <input id="bg-minutes" type="number" min="1" required value=${minutes} onInput=${(e: any) => setMinutes(e.currentTarget.value)} />
      <div class="actions"><button class="danger" type="submit">Start break-glass</button></div>
      ${started ? html`<p class="ok" role="status">Started <code>${started.id}</code>: ${started.status}${started.status === 'pending' ? ' (another admin confirms it)' : ''}.</p>` : null}
      ${(started?.warnings ?? []).map((w: any) => html`<p class="note">${w.message}</p>`)}
      <${ErrorBox} error=${error} />
    </form>
  </details>`;
}

function BreakGlassCard({ b, me, now, onDone }: { b: any; me: Me; now: number; onDone: () => void }) {
  const [text, setText] = useState('');
  const [error, setError] = useState<unknown>(null);
  const act = async (path: string, body: unknown) => {
    setError(null);
    try {
      await post(`/v1/break-glass/${encodeURIComponent(b.id)}/${path}`, body);
      setText('');
      onDone();
    } catch (err) {
      setError(err);
    }
  };
  const admin = hasRole(me);
  return html`<article class="card" data-break-glass-id=${b.id}>
    <header><h2><code>${b.id}</code></h2><${StatusBadge} status=${b.status} />${b.status === 'active' ? html`<span class="left">${timeLeft(b.ends_at, now)}</span>` : null}</header>
    <dl class="grid">
      <${Field} label=${b.task_id ? 'Task' : 'Agent'}><code>${b.task_id ?? b.agent_id}</code><//>
      <${Field} label="Tools">${(b.scope?.tools ?? []).map((t: string) => html`<code class="pill">${t}</code> `)}<//>
      <${Field} label="Justification"><span class="intent">${b.justification}</span><//>
      <${Field} label="Started by"><code>${b.requested_by}</code>${b.confirmed_by ? html`, confirmed by <code>${b.confirmed_by}</code>` : null}<//>
      <${Field} label="Window">${when(b.starts_at)} → ${when(b.ends_at)}<//>
      ${b.ended_at ? html`<${Field} label="Ended">${when(b.ended_at)}${b.ended_by ? html` by <code>${b.ended_by}</code>` : null}<//>` : null}
      ${b.reviewed_at ? html`<${Field} label="Reviewed">${when(b.reviewed_at)} by <code>${b.reviewed_by}</code>: <q>${b.review_notes}</q><//>` : null}
    </dl>
    ${b.status === 'pending' && admin ? html`<div class="actions"><button onClick=${() => act('confirm', {})}>Confirm (a second admin)</button></div>` : null}
    ${b.status === 'active' && admin
      ? html`<div class="inline-form"><input placeholder="reason" maxlength="1000" value=${text} onInput=${(e: any) => setText(e.currentTarget.value)} /><button class="end" onClick=${() => act('end', text ? { reason: text } : {})}>End now</button></div>`
      : null}
    ${b.needs_review && admin
      ? html`<div class="review"><label>Review notes</label><textarea rows="2" maxlength="4096" value=${text} onInput=${(e: any) => setText(e.currentTarget.value)}></textarea><div class="actions"><button onClick=${() => act('review', { notes: text })} disabled=${!text}>Record review</button></div></div>`
      : null}
    <${ErrorBox} error=${error} />
  </article>`;
}
