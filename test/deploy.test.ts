/**
 * deploy/: the systemd unit parses and is hardened, and the env file names only real settings.
 *
 * Where `systemd-analyze` exists the unit is checked by `systemd-analyze verify` (which exits 0
 * on an unknown key or a bad value but says so on stderr: any stderr fails), and its exposure
 * by `systemd-analyze security --offline=yes`. Without it, a syntax check of our own runs
 * (sections, `Key=value` lines, directive names from systemd.directives(7), boolean values).
 * Which one ran is printed as a test diagnostic.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SETTINGS } from '../src/config/settings.js';
import { REPO } from './helpers/serve-process.js';

const UNIT = readFileSync(join(REPO, 'deploy', 'writ.service'), 'utf8');
const ENV_FILE = readFileSync(join(REPO, 'deploy', 'writ.env'), 'utf8');

const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).status === 0;

/** Directives a unit of this kind may use (systemd.unit(5), systemd.service(5), systemd.exec(5), systemd.kill(5), systemd.resource-control(5)). */
const DIRECTIVES: Record<string, Set<string>> = {
  Unit: new Set(['Description', 'Documentation', 'Wants', 'Requires', 'After', 'Before', 'BindsTo', 'PartOf', 'Conflicts', 'ConditionPathExists', 'StartLimitIntervalSec', 'StartLimitBurst']),
  Service: new Set([
    'Type', 'ExecStart', 'ExecStartPre', 'ExecReload', 'ExecStop', 'Restart', 'RestartSec', 'TimeoutStartSec', 'TimeoutStopSec', 'KillSignal', 'KillMode',
    'User', 'Group', 'DynamicUser', 'SupplementaryGroups', 'StateDirectory', 'StateDirectoryMode', 'RuntimeDirectory', 'LogsDirectory', 'ConfigurationDirectory',
    'WorkingDirectory', 'Environment', 'EnvironmentFile', 'LoadCredential', 'SetCredential', 'UMask', 'LimitNOFILE', 'NoNewPrivileges', 'CapabilityBoundingSet',
    'AmbientCapabilities', 'ProtectSystem', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'PrivateMounts', 'PrivateNetwork', 'PrivateUsers', 'DevicePolicy', 'DeviceAllow',
    'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups', 'ProtectClock', 'ProtectHostname', 'ProtectProc',
    'ProcSubset', 'RestrictAddressFamilies', 'RestrictNamespaces', 'RestrictRealtime', 'RestrictSUIDSGID', 'LockPersonality', 'RemoveIPC',
    'SystemCallArchitectures', 'SystemCallFilter', 'SystemCallErrorNumber', 'MemoryDenyWriteExecute', 'ReadWritePaths', 'ReadOnlyPaths', 'InaccessiblePaths',
    'IPAddressAllow', 'IPAddressDeny', 'MemoryMax', 'TasksMax',
  ]),
  Install: new Set(['WantedBy', 'RequiredBy', 'Alias', 'Also']),
};
const BOOLEAN = new Set(['DynamicUser', 'NoNewPrivileges', 'PrivateTmp', 'PrivateDevices', 'PrivateMounts', 'PrivateNetwork', 'PrivateUsers', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups', 'ProtectClock', 'ProtectHostname', 'RestrictRealtime', 'RestrictSUIDSGID', 'LockPersonality', 'RemoveIPC', 'MemoryDenyWriteExecute']);
const ENUMS: Record<string, Set<string>> = {
  Type: new Set(['simple', 'exec', 'forking', 'oneshot', 'dbus', 'notify', 'idle']),
  Restart: new Set(['no', 'on-success', 'on-failure', 'on-abnormal', 'on-watchdog', 'on-abort', 'always']),
  ProtectSystem: new Set(['yes', 'no', 'full', 'strict']),
  ProtectHome: new Set(['yes', 'no', 'read-only', 'tmpfs']),
  ProtectProc: new Set(['noaccess', 'invisible', 'ptraceable', 'default']),
  ProcSubset: new Set(['all', 'pid']),
  DevicePolicy: new Set(['auto', 'closed', 'strict']),
};

/** The unit's directives, section by section (continuation lines joined), or the syntax errors. */
export function parseUnit(text: string): { entries: { section: string; key: string; value: string; line: number }[]; errors: string[] } {
  const entries: { section: string; key: string; value: string; line: number }[] = [];
  const errors: string[] = [];
  let section = '';
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!.trim();
    const n = i + 1;
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) line = line.slice(0, -1) + ' ' + lines[++i]!.trim();
    const s = /^\[([A-Za-z]+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      if (!DIRECTIVES[section]) errors.push(`line ${n}: unknown section [${section}]`);
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)$/.exec(line);
    if (!kv) {
      errors.push(`line ${n}: not a Key=value line`);
      continue;
    }
    const [, key, value] = kv as unknown as [string, string, string];
    if (section === '') errors.push(`line ${n}: ${key} before any section`);
    else if (DIRECTIVES[section] && !DIRECTIVES[section]!.has(key)) errors.push(`line ${n}: unknown key ${key} in [${section}]`);
    else if (BOOLEAN.has(key) && !/^(yes|no|true|false|on|off|1|0)$/.test(value)) errors.push(`line ${n}: ${key} is not a boolean: ${value}`);
    else if (ENUMS[key] && !ENUMS[key]!.has(value)) errors.push(`line ${n}: bad ${key}: ${value}`);
    else if (key.startsWith('Exec') && !/^[-@:+!]*\//.test(value)) errors.push(`line ${n}: ${key} needs an absolute path`);
    entries.push({ section, key, value, line: n });
  }
  return { entries, errors };
}

/** What the check that runs here says about a unit text: [] when it parses cleanly. */
function checkUnit(dir: string, text: string): string[] {
  if (!hasSystemdAnalyze) return parseUnit(text).errors;
  // verify checks that ExecStart's program exists: point it at this node
  const path = join(dir, 'writ.service');
  writeFileSync(path, text.replaceAll('/usr/bin/node', process.execPath));
  const r = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8', cwd: dir });
  const problems = r.stderr.split('\n').filter((l) => l.trim() !== '');
  if (r.status !== 0 && problems.length === 0) problems.push(`systemd-analyze verify exited ${r.status}`);
  return problems;
}

describe('deploy/ (issue 15 item 8)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-deploy-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the unit parses cleanly', (t) => {
    t.diagnostic(hasSystemdAnalyze ? 'checked with systemd-analyze verify' : 'systemd-analyze not found: checked with the syntax check of this file');
    assert.deepEqual(checkUnit(dir, UNIT), []);
    // the syntax check agrees, wherever it runs
    assert.deepEqual(parseUnit(UNIT).errors, []);
  });

  it('the check refuses near-variants: a misspelt key, a bad value, a missing program, a key outside a section', () => {
    const variants: [string, string][] = [
      ['misspelt key', UNIT.replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes')],
      ['bad value', UNIT.replace('ProtectSystem=strict', 'ProtectSystem=strik')],
      ['bad boolean', UNIT.replace('PrivateTmp=yes', 'PrivateTmp=maybe')],
      ['missing program', UNIT.replace(/^ExecStart=\/usr\/bin\/node/m, 'ExecStart=/usr/bin/no-such-node-binary')],
      ['unknown section', UNIT.replace('[Install]', '[Instal]')],
    ];
    for (const [what, text] of variants) {
      assert.notDeepEqual(checkUnit(dir, text), [], `${what} must be refused`);
      // the fallback catches each too, except a program that is only missing on this machine
      if (what !== 'missing program') assert.notDeepEqual(parseUnit(text).errors, [], `${what} (syntax check)`);
    }
  });

  it('is hardened: a dynamic user, a read-only system, its own state directory, no privileges', () => {
    const { entries } = parseUnit(UNIT);
    const get = (key: string) => entries.filter((e) => e.section === 'Service' && e.key === key).map((e) => e.value);
    for (const [key, want] of [
      ['DynamicUser', 'yes'], ['ProtectSystem', 'strict'], ['StateDirectory', 'writ'], ['StateDirectoryMode', '0700'], ['NoNewPrivileges', 'yes'],
      ['ProtectHome', 'yes'], ['PrivateTmp', 'yes'], ['PrivateDevices', 'yes'], ['CapabilityBoundingSet', ''], ['UMask', '0077'], ['RestrictSUIDSGID', 'yes'],
    ] as const) {
      assert.deepEqual(get(key), [want], key);
    }
    // V8's JIT needs writable-then-executable pages: this one must stay off
    assert.deepEqual(get('MemoryDenyWriteExecute'), []);
    // the SQLite store goes where StateDirectory puts it
    assert.ok(get('Environment').some((v) => v.split(/\s+/).includes('WRIT_DATA_DIR=/var/lib/writ')));
    if (hasSystemdAnalyze) {
      const dir2 = mkdtempSync(join(tmpdir(), 'writ-deploy-sec-'));
      try {
        writeFileSync(join(dir2, 'writ.service'), UNIT.replaceAll('/usr/bin/node', process.execPath));
        const r = spawnSync('systemd-analyze', ['security', '--offline=yes', join(dir2, 'writ.service')], { encoding: 'utf8' });
        const m = /Overall exposure level for writ\.service: ([\d.]+)/.exec(r.stdout);
        if (m) assert.ok(Number(m[1]) <= 2, `exposure ${m[1]} (systemd-analyze security)`);
      } finally {
        rmSync(dir2, { recursive: true, force: true });
      }
    }
  });

  it('stops after the drain can finish: TimeoutStopSec outlasts the grace period and the delay', () => {
    const { entries } = parseUnit(UNIT);
    const stop = Number(entries.find((e) => e.key === 'TimeoutStopSec')!.value);
    const env = envFileValues(ENV_FILE);
    const grace = Number(env.get('WRIT_SHUTDOWN_GRACE_MS') ?? SETTINGS.WRIT_SHUTDOWN_GRACE_MS.default);
    const delay = Number(env.get('WRIT_SHUTDOWN_DELAY_MS') ?? 0);
    assert.ok(stop * 1000 > grace + delay, `TimeoutStopSec=${stop} vs ${grace} + ${delay} ms`);
    assert.equal(entries.find((e) => e.key === 'KillSignal')?.value, 'SIGTERM');
  });

  it('the env file is NAME=value lines of real settings only (commented ones too), and holds no secret', () => {
    const names = new Set(Object.keys(SETTINGS));
    for (const [i, raw] of ENV_FILE.split('\n').entries()) {
      const line = raw.trim();
      if (line === '') continue;
      const m = /^#?(WRIT_[A-Z0-9_]+)=(.*)$/.exec(line);
      if (!m) {
        assert.ok(line.startsWith('#'), `line ${i + 1}: neither a comment nor NAME=value: ${line}`);
        continue;
      }
      assert.ok(names.has(m[1]!), `line ${i + 1}: ${m[1]} is not a setting (src/config/settings.ts)`);
      assert.doesNotMatch(line, /^export /);
    }
    const env = envFileValues(ENV_FILE);
    for (const secret of ['WRIT_KEY_ENCRYPTION_KEY', 'WRIT_BOOTSTRAP_TOKEN', 'WRIT_WEBHOOK_SECRET', 'WRIT_METRICS_TOKEN']) assert.equal(env.get(secret), undefined, `${secret} ships unset`);
  });
});

function envFileValues(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(WRIT_[A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}
