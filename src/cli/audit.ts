import { closeSync, createWriteStream, existsSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { join, resolve } from 'node:path';
import { flag, hasSwitch, intFlag, list, parseArgs, positionals, UsageError } from './args.js';
import { baseUrl, CliError, CONNECTION, operatorToken, print, request, requestRaw, seg } from './client.js';
import { group } from './command.js';
import { AUDIT_USAGE } from './usage.js';

type ChainReport = { ok: true; entries: number } | { ok: false; entries: number; first_bad_seq: number; problem: string };

/** Opens the store itself (no server needed): SQLite under `dataDir`, or WRIT_DATABASE_URL. */
async function verifyLocally(dataDir: string, checkpoints: string[], pinnedKey: { keys: unknown[] } | undefined): Promise<ChainReport> {
  const databaseUrl = process.env.WRIT_DATABASE_URL?.trim() || undefined;
  const dir = resolve(dataDir);
  // the store would create an empty database, which verifies as an intact empty chain
  if (!databaseUrl && !existsSync(join(dir, 'writ.db'))) throw new CliError('store_not_found', `no Writ database at ${join(dir, 'writ.db')}`);
  const [{ openStore }, { verifyChain }] = await Promise.all([import('../store/open-store.js'), import('../audit/verify-chain.js')]);
  let store;
  try {
    store = await openStore({ databaseUrl, databaseSchema: process.env.WRIT_DATABASE_SCHEMA || undefined, databaseUser: process.env.PGUSER || undefined, dataDir: dir });
  } catch (err) {
    throw new CliError('store_unavailable', `cannot open the store: ${(err as Error).message}`);
  }
  try {
    // Offline, the checkpoints' signatures are checked against the audit checkpoint key
    // (never a token key): the one pinned with --audit-key (what
    // /.well-known/writ-audit-key published, kept with the checkpoints), else the store's.
    const pins = [];
    if (checkpoints.length > 0) {
      const { verifyCheckpoint } = await import('../audit/checkpoint.js');
      const jwks = pinnedKey ?? { keys: (await store.listCheckpointKeys()).map((k) => k.publicJwk) };
      for (const [i, token] of checkpoints.entries()) {
        try {
          pins.push(await verifyCheckpoint(token, jwks as never));
        } catch {
          throw new CliError('invalid_checkpoint', `checkpoint ${i} does not verify with the audit checkpoint key`);
        }
      }
    }
    return await verifyChain(store, 1000, { checkpoints: pins });
  } catch (err) {
    if (err instanceof CliError) throw err;
    const cause = (err as { cause?: Error }).cause;
    throw new CliError('store_unavailable', `cannot read the audit chain: ${cause?.message ?? (err as Error).message}`);
  } finally {
    await store.close().catch(() => undefined);
  }
}

/** A file holding the JWK Set `GET /.well-known/writ-audit-key` answered. */
function readAuditKey(path: string): { keys: unknown[] } {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    throw new CliError('invalid_audit_key', `${path} is not a readable JSON file`);
  }
  const keys = (v as { keys?: unknown }).keys;
  if (!Array.isArray(keys) || keys.length === 0) throw new CliError('invalid_audit_key', `${path} holds no JWK Set (\`{"keys": [...]}\`)`);
  return { keys };
}

/** A file holding a checkpoint JWS, or the JSON `writ audit checkpoint` printed. */
function readCheckpointFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch {
    throw new CliError('checkpoint_not_found', `cannot read checkpoint file ${path}`);
  }
  if (text.startsWith('{')) {
    try {
      const cp = (JSON.parse(text) as { checkpoint?: unknown }).checkpoint;
      if (typeof cp === 'string') return cp;
    } catch {
      /* reported below */
    }
    throw new CliError('invalid_checkpoint', `${path} holds no checkpoint`);
  }
  return text;
}

/**
 * `writ audit verify --offline FILE --key KEY`: nothing but the file and the pinned key.
 * KEY is the note verifier key itself (`name+hex+base64`) or a file holding it.
 */
async function verifyOffline(file: string, key: string | undefined, origin: string | undefined, label: string): Promise<number> {
  if (!key) throw new UsageError('--offline needs --key (the note verifier key from `writ audit key`, or a file holding it)');
  const { parseNoteVerifierKey } = await import('../audit/signed-note.js');
  const { verifyExportFile, verifyProofText } = await import('../audit/verify-offline.js');
  let keyText = key;
  if (!/^[^+\s]+\+[0-9a-f]{8}\+/.test(key)) {
    try {
      keyText = readFileSync(key, 'utf8').trim();
    } catch {
      throw new UsageError(`--key is neither a note verifier key nor a readable file: \`${key.slice(0, 80)}\``);
    }
  }
  let verifier;
  try {
    verifier = parseNoteVerifierKey(keyText);
  } catch (err) {
    throw new UsageError(`--key: ${(err as Error).message}`);
  }
  let head: Buffer;
  try {
    const fd = openSync(file, 'r');
    head = Buffer.alloc(64);
    const n = readSync(fd, head, 0, 64, 0);
    closeSync(fd);
    head = head.subarray(0, n);
  } catch {
    throw new CliError('file_not_found', `cannot read ${file}`);
  }
  const opts = origin ? { origin } : {};
  const report = head.toString('utf8').startsWith('c2sp.org/tlog-proof@v1')
    ? verifyProofText(readFileSync(file, 'utf8'), [verifier], opts)
    : await verifyExportFile(file, [verifier], opts);
  print(report);
  if (report.ok) return 0;
  for (const p of report.problems) process.stderr.write(`writ ${label}: audit_evidence_invalid: ${p.at}: ${p.problem}\n`);
  return 1;
}

/** `writ audit list|checkpoint|key|export|prove|trace|verify`. */
export const audit = group('audit', AUDIT_USAGE, {
  async list(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'task', 'agent', 'type', 'decision', 'after', 'limit'] });
    positionals(args, []);
    const query = {
      task_id: flag(args, 'task'),
      agent_id: flag(args, 'agent'),
      type: flag(args, 'type'),
      decision_id: flag(args, 'decision'),
      after: intFlag(args, 'after', 0),
      limit: intFlag(args, 'limit', 1),
    };
    print(await request(baseUrl(args), 'GET', '/v1/audit', { token: operatorToken(args), query }));
  },

  async checkpoint(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'out'] });
    positionals(args, []);
    const cp = await request(baseUrl(args), 'POST', '/v1/audit/checkpoints', { token: operatorToken(args) });
    const out = flag(args, 'out');
    if (out !== undefined) writeFileSync(out, `${cp.checkpoint}\n`, { flag: 'wx' });
    print(cp);
  },

  async key(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION] });
    positionals(args, []);
    print(await request(baseUrl(args), 'GET', '/v1/audit/checkpoint-key', { token: operatorToken(args) }));
  },

  async export(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'since', 'until', 'format', 'out'] });
    positionals(args, []);
    const format = flag(args, 'format') ?? 'jsonl';
    if (format !== 'jsonl' && format !== 'ocsf') throw new UsageError('--format is jsonl or ocsf');
    const res = await requestRaw(baseUrl(args), '/v1/audit/export', { token: operatorToken(args), query: { since: flag(args, 'since'), until: flag(args, 'until'), format } });
    const out = flag(args, 'out');
    const sink = out !== undefined ? createWriteStream(out, { flags: 'wx' }) : process.stdout;
    await pipeline(Readable.fromWeb(res.body as never), sink);
  },

  async prove(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'out'] });
    const [id] = positionals(args, ['id']);
    const res = await requestRaw(baseUrl(args), `/v1/audit/proof/${seg(id!)}`, { token: operatorToken(args), timeoutMs: 30_000 });
    const text = await res.text();
    const out = flag(args, 'out');
    if (out !== undefined) writeFileSync(out, text, { flag: 'wx' });
    else process.stdout.write(text);
  },

  async trace(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION], switches: ['json'] });
    const [id] = positionals(args, ['id']);
    const json = hasSwitch(args, 'json');
    const res = await requestRaw(baseUrl(args), `/v1/audit/trace/${seg(id!)}`, { token: operatorToken(args), query: { format: json ? 'json' : 'text' }, timeoutMs: 30_000 });
    const text = await res.text();
    process.stdout.write(json ? `${JSON.stringify(JSON.parse(text), null, 2)}\n` : text);
  },

  async verify(argv, ctx) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'data-dir', 'audit-key', 'offline', 'key', 'origin'], lists: ['checkpoint'] });
    positionals(args, []);
    const offline = flag(args, 'offline');
    if (offline !== undefined) return verifyOffline(offline, flag(args, 'key'), flag(args, 'origin'), ctx.label);
    const dataDir = flag(args, 'data-dir');
    const checkpoints = list(args, 'checkpoint').map(readCheckpointFile);
    const keyFile = flag(args, 'audit-key');
    if (keyFile !== undefined && dataDir === undefined) throw new UsageError('`--audit-key` goes with `--data-dir` (offline verification)');
    const report: ChainReport = dataDir !== undefined
      ? await verifyLocally(dataDir, checkpoints, keyFile === undefined ? undefined : readAuditKey(keyFile))
      : checkpoints.length > 0
        ? await request(baseUrl(args), 'POST', '/v1/audit/verify', { token: operatorToken(args), json: { checkpoints } })
        : await request(baseUrl(args), 'GET', '/v1/audit/verify', { token: operatorToken(args) });
    print(report);
    if (report.ok) return 0;
    process.stderr.write(`writ ${ctx.label}: audit_chain_broken: the chain breaks at seq ${report.first_bad_seq}: ${report.problem}\n`);
    return 1;
  },
});
