import { html } from './ui.js';
import type { Live, Me } from './app.js';
export function BreakGlassPage(_: { me: Me; live: Live }) {
  return html`<section><h1>Break-glass</h1></section>`;
}
