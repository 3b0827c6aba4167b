/**
 * C2SP tlog-proof (https://c2sp.org/tlog-proof): one self-contained, offline-verifiable
 * proof that an entry is in a checkpointed log.
 *
 *   c2sp.org/tlog-proof@v1
 *   extra <base64 of the entry's leaf bytes>      (Writ always includes the entry)
 *   index <leaf index>
 *   <base64 proof hash>...
 *   <blank line>
 *   <signed checkpoint note>
 */
export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';

export interface TlogProof {
  extra: Buffer | null;
  index: number;
  proof: Buffer[];
  /** the signed note, verbatim */
  checkpoint: string;
}

export class ProofFormatError extends Error {
  readonly code = 'invalid_proof';
}

export function formatTlogProof(p: TlogProof): string {
  const lines = [TLOG_PROOF_HEADER];
  if (p.extra) lines.push(`extra ${p.extra.toString('base64')}`);
  lines.push(`index ${p.index}`);
  for (const h of p.proof) lines.push(h.toString('base64'));
  return `${lines.join('\n')}\n\n${p.checkpoint}`;
}

const HASH_LINE = /^[A-Za-z0-9+/]{43}=$/;

export function parseTlogProof(text: string): TlogProof {
  const split = text.indexOf('\n\n');
  if (split < 0) throw new ProofFormatError('a tlog-proof has a blank line before its checkpoint');
  const head = text.slice(0, split).split('\n');
  const checkpoint = text.slice(split + 2);
  if (head[0] !== TLOG_PROOF_HEADER) throw new ProofFormatError(`a tlog-proof starts with \`${TLOG_PROOF_HEADER}\``);
  let i = 1;
  let extra: Buffer | null = null;
  if (head[i]?.startsWith('extra ')) {
    const b64 = head[i]!.slice(6);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) throw new ProofFormatError('the extra line is not base64');
    extra = Buffer.from(b64, 'base64');
    i++;
  }
  const m = /^index (0|[1-9][0-9]{0,15})$/.exec(head[i] ?? '');
  if (!m || !Number.isSafeInteger(Number(m[1]))) throw new ProofFormatError('the index line is missing or malformed');
  i++;
  const proof: Buffer[] = [];
  for (; i < head.length; i++) {
    if (!HASH_LINE.test(head[i]!)) throw new ProofFormatError(`proof line ${i + 1} is not a base64 SHA-256 hash`);
    proof.push(Buffer.from(head[i]!, 'base64'));
  }
  if (proof.length > 64) throw new ProofFormatError('the proof is longer than any tree is deep');
  return { extra, index: Number(m[1]), proof, checkpoint };
}
