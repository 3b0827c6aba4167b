import assert from 'node:assert/strict';
import { runChild } from './child.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is JSON */
  json: any;
}

/**
 * Runs `node bin/writ.js ...` as a child process (in its own process group, see child.ts). Async on purpose: the server under
 * test answers from this same process. The test runner's context and any database
 * URL are not passed down, so the child talks only to the server it is pointed at.
 */
export async function writ(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) {
    if (v !== undefined && k !== 'NODE_TEST_CONTEXT' && k !== 'WRIT_DATABASE_URL') childEnv[k] = v;
  }
  const r = await runChild(process.execPath, ['bin/writ.js', ...args], { env: childEnv });
  if (r.code === null) throw new Error(`writ ${args.join(' ')} ended by ${r.signal}: ${r.stderr}`);
  const { code, stdout, stderr } = r;
  let json: any;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  return { code, stdout, stderr, json };
}

/** Asserts exit 0 and JSON on stdout; returns the JSON. */
export function ok(r: CliResult): any {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  assert.ok(r.json !== undefined, `stdout is not JSON: ${r.stdout}`);
  return r.json;
}
