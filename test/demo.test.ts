import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runChild } from './helpers/child.js';
import { ROOT } from './helpers/gateway-fixtures.js';

/**
 * `npm run demo` as a reader runs it: one command, no model. The demo checks each step
 * itself (exit 1 on any unexpected result) and stops every child it started on the way
 * out; this test holds it to that and to the story it prints.
 */
describe('npm run demo', () => {
  it('runs the whole story and ends with a verified audit log', async (t) => {
    const started = Date.now();
    const r = await runChild('npm', ['run', '--silent', 'demo'], { cwd: ROOT, env: { ...process.env, NO_COLOR: '1' }, timeoutMs: 240_000 });
    const seconds = (Date.now() - started) / 1000;
    t.diagnostic(`demo took ${seconds.toFixed(1)} s`);
    assert.equal(r.code, 0, `demo failed:\n${r.stdout}\n${r.stderr}`);
    const out = r.stdout;
    assert.doesNotMatch(out, /UNEXPECTED/);
    // normal calls pass
    assert.match(out, /ALLOWED {2}payments\.pay 240 EUR -> paid 240 EUR to northwind/);
    // the injected exfiltration is refused for its destination and never reaches the paste site
    assert.match(out, /REFUSED {2}paste\.upload -> destination_out_of_scope/);
    assert.match(out, /the paste site received 0 uploads/);
    // over the limit: an approval, given from the CLI, then the payment
    assert.match(out, /runs: writ approvals approve apr_/);
    assert.match(out, /ALLOWED {2}payments\.pay 4800 EUR -> paid 4800 EUR to contoso/);
    // the sub-agent's narrower delegation
    assert.match(out, /ALLOWED {2}sub-agent files\.read/);
    assert.match(out, /REFUSED {2}sub-agent mail\.send -> tool_out_of_scope/);
    // completion ends every token
    assert.match(out, /REFUSED {2}agent task token at Writ -> 401 task_not_active/);
    assert.match(out, /REFUSED {2}sub-agent task token at Writ -> 401 task_not_active/);
    assert.match(out, /REFUSED {2}sub-agent reconnect to the gateway -> 401 task_not_active/);
    // the trace tells the story, and the log verifies
    assert.match(out, /trace of task task_/);
    assert.match(out, /deny paste\.upload .*destination_out_of_scope/);
    assert.match(out, /approval apr_\S+ approved by/);
    assert.match(out, /task\.completed/);
    assert.match(out, /"ok": true/);
    assert.match(out, /demo finished: every step behaved/);
    // a coarse bound for a busy machine; the target (and the usual figure) is well under 60 s
    assert.ok(seconds < 120, `the demo took ${seconds} s`);
  });
});
