import { html } from './ui.js';
import type { Me } from './app.js';
export function AgentsPage(_: { me: Me }) {
  return html`<section><h1>Agents</h1></section>`;
}
export function PoliciesPage(_: { me: Me }) {
  return html`<section><h1>Policies</h1></section>`;
}
export function OperatorsPage(_: { me: Me }) {
  return html`<section><h1>Operators</h1></section>`;
}
