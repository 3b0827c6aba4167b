import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is JSON */
  json: any;
}

/**
 * Runs `node bin/writ.js ...` as a child process. Async on purpose: the server under
 * test answers from this same process. The test runner's context and any database
 * URL are not passed down, so the child talks only to the server it is pointed at.
 */
export async function writ(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) {
    if (v !== undefined && k !== 'NODE_TEST_CONTEXT' && k !== 'WRIT_DATABASE_URL') childEnv[k] = v;
  }
  let stdout = '';
  let stderr = '';
  let code = 0;
  try {
    ({ stdout, stderr } = await run(process.execPath, ['bin/writ.js', ...args], { env: childEnv, timeout: 30_000 }));
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    code = e.code;
    stdout = e.stdout ?? '';
    stderr = e.stderr ?? '';
  }
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
