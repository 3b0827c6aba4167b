import { html } from './ui.js';
import type { Me } from './app.js';
export function AuditPage(_: { me: Me }) {
  return html`<section><h1>Audit</h1></section>`;
}
export function TracePage({ id }: { id: string }) {
  return html`<section><h1>Trace <code>${id}</code></h1></section>`;
}
