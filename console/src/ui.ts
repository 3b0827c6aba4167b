import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';

/**
 * Small shared pieces. Everything is rendered as text through Preact (never as HTML): a
 * tool argument or an intent that holds markup shows as that markup, inert. The CSP's
 * Trusted Types line makes any HTML sink throw, should one ever creep in.
 */

export { html };

/** Strings longer than this are folded (a <details> with the full text), never cut. */
export const FOLD_AT = 160;

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function timeLeft(iso: string, now: number): string {
  const ms = Date.parse(iso) - now;
  if (!(ms > 0)) return 'expired';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s left`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s left`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min left`;
}

/** A clock that re-renders its user every second. */
export function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return now;
}

/** A value folded when long: the start, then the whole of it behind a <details>. */
export function Folded({ text }: { text: string }) {
  if (text.length <= FOLD_AT) return html`<span class="str">${text}</span>`;
  return html`<details class="fold"><summary><span class="str">${text.slice(0, 80)}</span>… <span class="muted">(${text.length} characters: show all)</span></summary><pre class="full">${text}</pre></details>`;
}

/** A JSON value as a tree of text (objects and arrays indented, strings folded when long). */
export function JsonTree({ value }: { value: unknown }): any {
  if (value === null) return html`<span class="lit">null</span>`;
  if (typeof value === 'string') return html`<${Folded} text=${JSON.stringify(value)} />`;
  if (typeof value !== 'object') return html`<span class="lit">${String(value)}</span>`;
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return html`<span class="lit">${Array.isArray(value) ? '[]' : '{}'}</span>`;
  return html`<ul class="tree">${entries.map(([k, v]) => html`<li><span class="key">${k}</span>: <${JsonTree} value=${v} /></li>`)}</ul>`;
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error as { code?: string; message?: string };
  return html`<p class="error" role="alert">${e.code ? html`<code>${e.code}</code> ` : ''}${e.message ?? String(error)}</p>`;
}

export function Field({ label, children }: { label: string; children: unknown }) {
  return html`<div class="field"><dt>${label}</dt><dd>${children}</dd></div>`;
}

export function StatusBadge({ status }: { status: string }) {
  return html`<span class=${`badge s-${String(status).replace(/[^a-z_]/g, '')}`}>${status}</span>`;
}

export function Loading() {
  return html`<p class="muted">Loading…</p>`;
}

/** Data for a page: loads on mount and when `deps` change; `reload` loads again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[] = []): { data: T | undefined; error: unknown; reload: () => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (d) => live && (setData(d), setError(null)),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [...deps, n]);
  return { data, error, reload: () => setN((x) => x + 1) };
}
