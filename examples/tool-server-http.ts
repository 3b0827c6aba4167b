/**
 * A plain HTTP tool server that accepts a request only with a valid action token for
 * exactly this request (`Writ-Action-Token` header), burning it at Writ once. Put it
 * behind `writ gateway http` with `"forward_action_token": true` on its route.
 *
 *   node --import tsx examples/tool-server-http.ts --writ http://127.0.0.1:8080 --port 9101 --tool acme.orders
 */
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { createHttpActionGuard } from '@writ/sdk';

const { values } = parseArgs({
  options: {
    writ: { type: 'string', default: 'http://127.0.0.1:8080' },
    port: { type: 'string', default: '9101' },
    tool: { type: 'string', default: 'acme.orders' },
    audience: { type: 'string' },
  },
});
const port = Number(values.port);
// the proxy's default audience for a route is the upstream's origin
const audience = values.audience ?? `http://127.0.0.1:${port}`;
const meta = (await (await fetch(`${values.writ}/.well-known/oauth-authorization-server`)).json()) as { issuer: string; jwks_uri: string };

const guard = createHttpActionGuard({ issuer: meta.issuer, audience, jwks: `${values.writ}/.well-known/jwks.json`, writUrl: values.writ, tool: values.tool! });

createServer(async (req, res) => {
  const ok = await guard(req, res); // answers 401/403/409 itself when the token does not fit
  if (!ok) return;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ done: true, decision_id: ok.claims.decision_id, task: ok.claims.txn, received: ok.json ?? null }));
}).listen(port, '127.0.0.1', () => console.log(`tool server on http://127.0.0.1:${port} (audience ${audience}, tool ${values.tool})`));
