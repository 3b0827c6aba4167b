import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { call, setCsrf, whenSignedOut } from './api.js';
import { html, ErrorBox } from './ui.js';
import { Inbox } from './page-inbox.js';
import { TaskList, TaskPage } from './page-tasks.js';
import { AuditPage, TracePage } from './page-audit.js';
import { BreakGlassPage } from './page-break-glass.js';
import { AgentsPage, OperatorsPage, PoliciesPage } from './page-admin.js';

/**
 * The Writ operator console (issue 16): one page, routed by the URL's fragment
 * (`#/approvals`, `#/tasks/<id>`, …) so the server serves one document.
 */

export interface Me {
  operator: { id: string; name: string; roles: string[]; expires_at: string };
  csrf: string;
}
export interface Live {
  /** bumped on every change the server reports (pending approvals, break-glass) */
  version: number;
  breakGlass: string[];
  connected: boolean;
}

export const hasRole = (me: Me, ...roles: string[]) => me.operator.roles.includes('admin') || roles.some((r) => me.operator.roles.includes(r));

function useRoute(): string[] {
  const read = () => (location.hash.replace(/^#\/?/, '') || 'approvals').split('/').map((p) => decodeURIComponent(p));
  const [route, setRoute] = useState(read());
  useEffect(() => {
    const on = () => setRoute(read());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** Server-sent events: the inbox and the break-glass banner follow them without a reload. */
function useLive(me: Me | null, signOut: () => void): Live {
  const [live, setLive] = useState<Live>({ version: 0, breakGlass: [], connected: false });
  useEffect(() => {
    if (!me) return;
    const es = new EventSource('/console/api/events');
    es.addEventListener('open', () => setLive((l) => ({ ...l, connected: true })));
    es.addEventListener('error', () => setLive((l) => ({ ...l, connected: false })));
    es.addEventListener('change', (ev) => {
      let data: { break_glass?: string[] } = {};
      try {
        data = JSON.parse((ev as MessageEvent).data);
      } catch {
        // keep the last state
      }
      setLive((l) => ({ version: l.version + 1, breakGlass: data.break_glass ?? l.breakGlass, connected: true }));
    });
    es.addEventListener('signed_out', () => {
      es.close();
      signOut();
    });
    return () => es.close();
  }, [me?.operator.id]);
  return live;
}

function SignIn({ onIn }: { onIn: (me: Me) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const r = await call<Me>('POST', '/session', { token });
      setToken('');
      onIn(r.body);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <h1>Writ console</h1>
    <form onSubmit=${submit}>
      <label for="token">Operator token</label>
      <input id="token" name="token" type="password" autocomplete="off" required value=${token} onInput=${(e: any) => setToken(e.currentTarget.value)} />
      <button type="submit" disabled=${busy}>Sign in</button>
      <${ErrorBox} error=${error} />
      <p class="muted">The token is exchanged for a session cookie and is not kept in the browser.</p>
    </form>
  </main>`;
}

const NAV: [string, string, string[]][] = [
  ['approvals', 'Approvals', []],
  ['tasks', 'Tasks', []],
  ['audit', 'Audit', ['auditor']],
  ['break-glass', 'Break-glass', ['auditor']],
  ['agents', 'Agents', []],
  ['policies', 'Policies', []],
  ['operators', 'Operators', ['auditor']],
];

function Shell({ me, onOut }: { me: Me; onOut: () => void }) {
  const route = useRoute();
  const live = useLive(me, onOut);
  const signOut = async () => {
    await call('DELETE', '/session').catch(() => undefined);
    onOut();
  };
  const [page, ...rest] = route;
  let body;
  switch (page) {
    case 'tasks':
      body = rest[0] ? html`<${TaskPage} me=${me} id=${rest[0]} live=${live} />` : html`<${TaskList} me=${me} />`;
      break;
    case 'audit':
      body = rest[0] === 'trace' && rest[1] ? html`<${TracePage} id=${rest[1]} />` : html`<${AuditPage} me=${me} />`;
      break;
    case 'break-glass':
      body = html`<${BreakGlassPage} me=${me} live=${live} />`;
      break;
    case 'agents':
      body = html`<${AgentsPage} me=${me} />`;
      break;
    case 'policies':
      body = html`<${PoliciesPage} me=${me} />`;
      break;
    case 'operators':
      body = html`<${OperatorsPage} me=${me} />`;
      break;
    default:
      body = html`<${Inbox} me=${me} live=${live} />`;
  }
  return html`<div class="shell">
    <header class="top">
      <a class="brand" href="#/approvals">Writ</a>
      <nav aria-label="Sections">${NAV.filter(([, , roles]) => roles.length === 0 || hasRole(me, ...roles)).map(
        ([id, label]) => html`<a href=${`#/${id}`} class=${page === id || (id === 'approvals' && !NAV.some(([n]) => n === page)) ? 'on' : ''}>${label}</a>`,
      )}</nav>
      <span class="who" title=${me.operator.id}>${me.operator.name} <span class="muted">(${me.operator.roles.join(', ')})</span></span>
      <span class=${live.connected ? 'dot on' : 'dot'} title=${live.connected ? 'live updates on' : 'live updates reconnecting'}></span>
      <button class="link" id="sign-out" onClick=${signOut}>Sign out</button>
    </header>
    ${live.breakGlass.length > 0
      ? html`<div class="banner" role="status" id="break-glass-banner">Break-glass is active (${live.breakGlass.length}): actions may be allowed outside the usual policy. <a href="#/break-glass">Review</a></div>`
      : null}
    <main>${body}</main>
  </div>`;
}

function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const signIn = (m: Me) => {
    setCsrf(m.csrf);
    setMe(m);
  };
  const signOut = () => {
    setCsrf('');
    setMe(null);
  };
  useEffect(() => {
    whenSignedOut(signOut);
    call<Me>('GET', '/session').then((r) => signIn(r.body), () => setMe(null));
  }, []);
  if (me === undefined) return html`<p class="muted pad">Loading…</p>`;
  if (me === null) return html`<${SignIn} onIn=${signIn} />`;
  return html`<${Shell} me=${me} onOut=${signOut} />`;
}

render(html`<${App} />`, document.getElementById('app')!);
