import { HASH_SIZE } from './merkle-tree.js';

/**
 * C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): the body of a signed note
 * that commits to a log's size and root hash.
 *
 *   <origin>\n<tree size, decimal, no leading zeros>\n<base64 root hash>\n[extension lines]
 */
export interface TlogCheckpoint {
  origin: string;
  size: number;
  root: Buffer;
  extensions: string[];
}

export class CheckpointFormatError extends Error {
  readonly code = 'invalid_checkpoint';
}

export function formatCheckpoint(c: TlogCheckpoint): string {
  if (!c.origin || /[\n\r]/.test(c.origin)) throw new TypeError('a checkpoint origin is one non-empty line');
  if (!Number.isSafeInteger(c.size) || c.size < 0) throw new TypeError('a checkpoint size is a non-negative integer');
  if (c.root.length !== HASH_SIZE) throw new TypeError('a checkpoint root is a SHA-256 hash');
  return [c.origin, String(c.size), c.root.toString('base64'), ...c.extensions].join('\n') + '\n';
}

export function parseCheckpoint(text: string): TlogCheckpoint {
  if (!text.endsWith('\n')) throw new CheckpointFormatError('a checkpoint ends in a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw new CheckpointFormatError('a checkpoint has an origin, a size and a root hash');
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (!origin) throw new CheckpointFormatError('the checkpoint origin is empty');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw new CheckpointFormatError(`the checkpoint size \`${sizeText.slice(0, 40)}\` is not a decimal integer`);
  }
  if (!/^[A-Za-z0-9+/]{43}=$/.test(rootText)) throw new CheckpointFormatError('the checkpoint root is not a base64 SHA-256 hash');
  if (extensions.some((l) => l === '')) throw new CheckpointFormatError('a checkpoint extension line is empty');
  return { origin, size: Number(sizeText), root: Buffer.from(rootText, 'base64'), extensions };
}
