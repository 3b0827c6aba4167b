import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WritError } from '../src/core/errors.js';
import { argumentPatterns } from '../src/policy/argument-check.js';
import { caretExcerpt, lineColumn, type PolicyDiagnostic } from '../src/policy/diagnostics.js';
import { checkPolicyText, PolicyEngine } from '../src/policy/engine.js';
import { loadCases, runCases } from '../src/cli/policy-test.js';
import { validatePolicyText } from '../src/cli/policy-validate.js';
import { writ } from './helpers/cli.js';

/** The diagnostics of a set that must be refused. */
function refused(text: string): PolicyDiagnostic[] {
  try {
    checkPolicyText(text);
  } catch (err) {
    assert.ok(err instanceof WritError && err.code === 'invalid_policy', String(err));
    return (err.details as { diagnostics: PolicyDiagnostic[] }).diagnostics;
  }
  assert.fail('the set was accepted');
}

const OK = '@id("a")\npermit (principal, action, resource);\n';

describe('policy diagnostics: id, line, column, caret', () => {
  it('a syntax error in the second policy names it, with line, column and a caret under the token', () => {
    const [d, ...rest] = refused(`${OK}\n@id("b")\npermit (principal, action, resource)\nwhen { resource resource };\n`);
    assert.equal(rest.length, 0);
    assert.equal(d!.severity, 'error');
    assert.equal(d!.policy_id, 'b');
    assert.equal(d!.line, 6);
    assert.equal(d!.column, 17);
    assert.equal(d!.excerpt, '6 | when { resource resource };\n  |                 ^^^^^^^^');
    assert.match(d!.message, /unexpected token `resource`/);
  });

  it('a validation error is located in the whole text, not in the policy alone', () => {
    const [d] = refused(`${OK}// a comment\n@id("b")\npermit (principal, action, resource)\n\twhen { context.foo == 1 };\n`);
    assert.equal(d!.policy_id, 'b');
    assert.equal(d!.line, 6);
    assert.equal(d!.column, 9);
    // the tab is kept so the caret lines up whatever the tab width
    assert.equal(d!.excerpt, '6 | \twhen { context.foo == 1 };\n  | \t       ^^^^^^^^^^^');
    assert.equal(d!.help, 'did you mean `args`?');
  });

  it('the same policy text twice at different places gets each place (not the first match)', () => {
    const p = 'permit (principal, action, resource) when { context.nope };';
    const ds = refused(`@id("x")\n${p}\n@id("y")\n${p}\n`);
    assert.deepEqual(ds.map((d) => [d.policy_id, d.line]).sort(), [['x', 2], ['y', 4]]);
  });

  it('a bad @approvals and a duplicate id are located', () => {
    const [a] = refused(`${OK}@id("b")\n@approvals("11")\npermit (principal, action, resource);\n`);
    assert.deepEqual([a!.policy_id, a!.line, a!.column], ['b', 4, 1]);
    const [dup] = refused(`${OK}${OK}`);
    assert.deepEqual([dup!.policy_id, dup!.line], ['a', 3]);
  });

  it('a policy without @id gets a warning and an id from its text, stable when others move', () => {
    const anon = 'forbid (principal, action, resource) when { resource.labels.contains("blocked") };\n';
    const one = checkPolicyText(`${OK}${anon}`);
    const two = checkPolicyText(`@id("z")\npermit (principal, action, resource);\n\n${anon}${OK}`);
    const id = one.ids.find((i) => i !== 'a')!;
    assert.match(id, /^policy-[0-9a-f]{12}$/);
    assert.ok(two.ids.includes(id), 'the same text gets the same id wherever it stands');
    assert.equal(one.warnings.length, 1);
    assert.equal(one.warnings[0]!.severity, 'warning');
    assert.equal(one.warnings[0]!.policy_id, id);
    assert.equal(one.warnings[0]!.line, 3);
    // different text, different id; whitespace alone does not change it
    const other = checkPolicyText(anon.replace('blocked', 'frozen')).ids[0];
    assert.notEqual(other, id);
    assert.equal(checkPolicyText(anon.replace(/ /g, '  ')).ids[0], id);
    // a named policy gets no warning
    assert.equal(checkPolicyText(OK).warnings.length, 0);
    // two identical unnamed policies collide: refused, not silently merged
    const [dup] = refused(`${anon}${anon}`);
    assert.match(dup!.message, /two policies have the id `policy-/);
  });

  it('lineColumn and caretExcerpt at the edges', () => {
    assert.deepEqual(lineColumn('ab\ncd', 0), { line: 1, column: 1 });
    assert.deepEqual(lineColumn('ab\ncd', 3), { line: 2, column: 1 });
    assert.deepEqual(lineColumn('ab\ncd', 99), { line: 2, column: 3 });
    // a span running past the line end is cut at the line end; an empty span gets one caret
    assert.equal(caretExcerpt('ab\ncd', 1, 5), '1 | ab\n  |  ^');
    assert.equal(caretExcerpt('ab\r\ncd', 4, 4), '2 | cd\n  | ^');
  });
});

describe('argument names against tool schemas', () => {
  const matches = (schema: unknown, name: string) => argumentPatterns(schema).some((r) => r.test(name));
  it('properties, nesting, arrays, free-form objects', () => {
    const s = {
      type: 'object',
      properties: {
        path: { type: 'string' },
        opts: { type: 'object', properties: { mode: { type: 'string' } } },
        tags: { type: 'array', items: { type: 'string' } },
        meta: { type: 'object' },
        files: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' } } } },
      },
    };
    for (const n of ['path', 'opts.mode', 'tags.0', 'tags.12', 'meta.anything', 'files.3.name']) assert.ok(matches(s, n), n);
    for (const n of ['pth', 'opts', 'opts.other', 'tags.x', 'tags', 'files.name', 'files.0.other', 'path.x', 'pathx']) assert.ok(!matches(s, n), n);
    // a dot in a property name is matched literally, not as any character
    assert.ok(!matches({ type: 'object', properties: { 'a.b': { type: 'string' } } }, 'aXb'));
    // additionalProperties allows any key; no schema at all allows anything
    assert.ok(matches({ type: 'object', properties: {}, additionalProperties: true }, 'x'));
    assert.ok(matches(undefined, 'x'));
  });

  it('validate warns on an argument no tool has, and says so when no schema is known', () => {
    const text = '@id("p")\nforbid (principal, action, resource)\nwhen { context.args.hasTag("pth") && context.args.getTag("pth") like "/etc/*" };\n';
    const tools = [{ name: 'fs.read', inputSchema: { type: 'object', properties: { path: { type: 'string' } } } }];
    const r = validatePolicyText(text, tools);
    assert.equal(r.ok, true);
    assert.equal(r.diagnostics.length, 1);
    assert.equal(r.diagnostics[0]!.severity, 'warning');
    assert.match(r.diagnostics[0]!.message, /no known tool has an argument `pth`/);
    assert.deepEqual([r.diagnostics[0]!.line, r.diagnostics[0]!.column], [3, 28]);
    // numeric reads too
    const num = validatePolicyText('@id("n")\nforbid (principal, action, resource)\nwhen { context.num_args.hasTag("amt") };\n', tools);
    assert.match(num.diagnostics[0]!.message, /`amt`/);
    // the right name: no warning
    assert.equal(validatePolicyText(text.replace(/pth/g, 'path'), tools).diagnostics.length, 0);
    const none = validatePolicyText(text, null);
    assert.equal(none.diagnostics.length, 0);
    assert.match(none.notes.join('\n'), /no tool input schemas are known/);
  });
});

describe('policy tests: examples/policies and the runner', () => {
  const dir = 'examples/policies';
  const sets = readdirSync(dir).filter((f) => f.endsWith('.cedar'));

  it('examples/policies holds every policy the README shows, each with passing cases', () => {
    const readme = readFileSync('README.md', 'utf8');
    const shown = [...readme.matchAll(/<!-- doc-test: policy -->\n```cedar\n([\s\S]*?)```/g)].map((m) => m[1]);
    assert.ok(shown.length >= 4);
    const shipped = sets.map((f) => readFileSync(join(dir, f), 'utf8'));
    for (const s of shown) assert.ok(shipped.includes(s!), `README policy not in examples/policies:\n${s}`);
    for (const f of sets) {
      const engine = new PolicyEngine();
      const set = engine.prepare(readFileSync(join(dir, f), 'utf8'));
      const out: string[] = [];
      const cases = loadCases(join(dir, f.replace(/\.cedar$/, '')));
      assert.ok(cases.length >= 3, f);
      assert.equal(runCases(engine, set, cases, (l) => out.push(l)), 0, `${f}:\n${out.join('\n')}`);
    }
  });

  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'writ-poltest-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('a wrong expectation, a YAML file and a malformed case each fail; the rest pass', () => {
    const cases = join(tmp, 'cases');
    mkdirSync(cases);
    writeFileSync(join(cases, 'a.json'), JSON.stringify({ name: 'wrong', request: { tool: 'payments.charge', arguments: { amount: 5000 } }, expect: { decision: 'allow' } }));
    writeFileSync(join(cases, 'b.json'), JSON.stringify({ request: { tool: 'x.y' }, expect: { decision: 'allow', reasons: ['oops'] } }));
    writeFileSync(join(cases, 'c.yaml'), 'request:\n  tool: x.y\n');
    writeFileSync(join(cases, 'd.json'), JSON.stringify({ request: { tool: 'x.y', agnet: {} }, expect: { decision: 'allow' } }));
    writeFileSync(join(cases, 'e.json'), '{not json');
    writeFileSync(join(cases, 'f.json'), JSON.stringify({ request: { tool: 'x.y' }, expect: { decision: 'allow', policies: ['allow-within-task-scope'] } }));
    const engine = new PolicyEngine();
    const set = engine.prepare(readFileSync(join(dir, 'payments-limit.cedar'), 'utf8'));
    const out: string[] = [];
    assert.equal(runCases(engine, set, loadCases(cases), (l) => out.push(l)), 5, out.join('\n'));
    const text = out.join('\n');
    assert.match(text, /^TAP version 14\n1\.\.6\n/);
    assert.match(text, /^not ok 1 - .*a\.json: wrong$/m);
    assert.match(text, /decision: expected allow, got deny/);
    assert.match(text, /reasons: expected \[\\"oops\\"\], got \[\]/);
    assert.match(text, /YAML case files are not supported/);
    assert.match(text, /`request`: Unrecognized key|agnet/);
    assert.match(text, /not JSON/);
    assert.match(text, /^ok 6 - .*f\.json$/m);
  });

  it('CLI: validate and test exit codes and output', { timeout: 240_000 }, async () => {
    const good = join(dir, 'payments-limit.cedar');
    const t = await writ(['policy', 'test', good, '--cases', join(dir, 'payments-limit')]);
    assert.equal(t.code, 0, t.stdout + t.stderr);
    assert.match(t.stdout, /^ok 1 - /m);
    // two failing cases: exit code 2
    const cases = join(tmp, 'two');
    mkdirSync(cases);
    for (const n of ['x', 'y']) writeFileSync(join(cases, `${n}.json`), JSON.stringify({ request: { tool: 'payments.charge', arguments: { amount: 5000 } }, expect: { decision: 'allow' } }));
    const f = await writ(['policy', 'test', good, '--cases', cases]);
    assert.equal(f.code, 2, f.stdout + f.stderr);
    const bad = join(tmp, 'bad.cedar');
    writeFileSync(bad, '@id("a")\npermit (principal, action, resource)\nwhen { resource resource };\n');
    const v = await writ(['policy', 'validate', bad]);
    assert.equal(v.code, 1);
    assert.ok(v.stderr.startsWith(`${bad}:3:17: error: policy \`a\`: unexpected token \`resource\``), v.stderr);
    assert.match(v.stderr, /^ {2}3 \| when \{ resource resource \};\n {2} {2}\| {17}\^{8}$/m);
    const tb = await writ(['policy', 'test', bad, '--cases', cases]);
    assert.equal(tb.code, 1, 'a policy that does not validate fails the test run');
    const vg = await writ(['policy', 'validate', good]);
    assert.equal(vg.code, 0, vg.stderr);
    assert.match(vg.stdout, /valid \(2 policies, 0 warnings\)/);
    const missing = await writ(['policy', 'test', good]);
    assert.equal(missing.code, 2, 'no --cases is a usage error');
  });
});
