#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with Node's own runner (Node 20 neither
// expands globs nor finds .ts files in a folder, so the files are listed here).
//
// PostgreSQL suites use WRIT_TEST_DATABASE_URL (default postgres://127.0.0.1:5432/test).
// When PostgreSQL cannot be reached they are skipped with the reason printed, unless
// WRIT_REQUIRE_POSTGRES=1 (set by .ci/run), in which case that is a failure.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';

function find(dir) {
  const out = [];
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    if (name === 'node_modules') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

async function reachable(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return `WRIT_TEST_DATABASE_URL is not a URL`;
  }
  return await new Promise((resolve) => {
    const s = net.connect({ host: u.hostname || '127.0.0.1', port: Number(u.port || 5432) });
    const t = setTimeout(() => (s.destroy(), resolve(`no answer from ${u.hostname}:${u.port || 5432} within 2 s`)), 2000);
    s.on('connect', () => (clearTimeout(t), s.end(), resolve(null)));
    s.on('error', (e) => (clearTimeout(t), resolve(`${u.hostname}:${u.port || 5432}: ${e.code ?? e.message}`)));
  });
}

const files = [...find('src'), ...find('test')].sort();
const args = process.argv.slice(2);
const selected = args.length ? files.filter((f) => args.some((a) => f.includes(a))) : files;

const env = { ...process.env };
env.WRIT_TEST_DATABASE_URL ??= 'postgres://127.0.0.1:5432/test';
const why = await reachable(env.WRIT_TEST_DATABASE_URL);
if (why) {
  if (env.WRIT_REQUIRE_POSTGRES === '1') {
    console.error(`PostgreSQL is required (WRIT_REQUIRE_POSTGRES=1) but unreachable: ${why}`);
    process.exit(1);
  }
  env.WRIT_SKIP_POSTGRES = why;
  console.log(`# skipping PostgreSQL suites: ${why}`);
}

console.log(`# ${selected.length} test files`);
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...selected], { stdio: 'inherit', env });
if (why) console.log(`# skipped PostgreSQL suites: ${why}`);
process.exit(r.status ?? 1);
