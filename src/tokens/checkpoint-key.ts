import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { okpThumbprint, signCompactJws } from '../core/compact-jws.js';
import type { Clock } from '../core/clock.js';
import type { CheckpointKeyRecord, Jwk } from '../core/types.js';
import type { Store } from '../store/store.js';
import { isSealed, sealJwk, unsealJwk } from './key-sealing.js';

/**
 * The key that signs audit checkpoints (Ed25519), and only them. It is kept apart from
 * the token signing keys: its own table, never in the token JWKS, never used for a
 * token, and checkpoints verify only against it. So a leaked token-signing key (or a
 * token key an attacker slipped into the store) cannot forge a checkpoint, and the
 * checkpoint key signs nothing an agent or tool server would accept.
 *
 * One key per store, created once on first start (under the store's lock, so instances
 * starting together agree). Its public half is published on its own, at
 * `GET /.well-known/writ-audit-key`; an investigator pins it with the checkpoints.
 */
export class CheckpointKey {
  private records: CheckpointKeyRecord[] = [];
  private signer: { kid: string; privateKey: KeyObject } | null = null;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly kek: Buffer | null = null,
  ) {}

  async init(): Promise<void> {
    await this.load();
    if (this.records.length > 0) return;
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const pub = publicKey.export({ format: 'jwk' }) as Jwk;
    const kid = `ckp-${okpThumbprint(pub)}`;
    const priv = privateKey.export({ format: 'jwk' }) as Jwk;
    const record: CheckpointKeyRecord = {
      kid,
      publicJwk: { ...pub, kid, alg: 'EdDSA', use: 'sig' },
      privateJwk: this.kek ? sealJwk(priv, kid, this.kek) : priv,
      createdAt: this.clock.now(),
    };
    await this.store.addFirstCheckpointKey(record, { type: 'audit.checkpoint_key_created', actor: 'system', data: { kid } });
    await this.load();
  }

  private async load(): Promise<void> {
    this.records = await this.store.listCheckpointKeys();
    // the newest key signs; older ones (none today) would stay published for old checkpoints
    const newest = this.records.at(-1);
    if (!newest) {
      this.signer = null;
      return;
    }
    let jwk = newest.privateJwk;
    if (isSealed(jwk)) {
      if (!this.kek) throw new Error(`checkpoint key \`${newest.kid}\` is sealed: set WRIT_KEY_ENCRYPTION_KEY`);
      jwk = unsealJwk(jwk, newest.kid, this.kek);
    }
    this.signer = { kid: newest.kid, privateKey: createPrivateKey({ key: jwk as never, format: 'jwk' }) };
  }

  sign(typ: string, claims: Record<string, unknown>): string {
    if (!this.signer) throw new Error('no checkpoint key is loaded');
    return signCompactJws(this.signer.privateKey, this.signer.kid, typ, claims);
  }

  /**
   * The private key itself, for a signer of another checkpoint format (the C2SP
   * signed-note signer, src/audit/signed-note.ts `createNoteSigner`): the same key, so the
   * same separation from the token keys.
   */
  signingKey(): KeyObject {
    if (!this.signer) throw new Error('no checkpoint key is loaded');
    return this.signer.privateKey;
  }

  /** The public checkpoint keys as a JWK Set (RFC 7517 §5): what checkpoints verify with. */
  jwks(): { keys: Jwk[] } {
    return { keys: this.records.map((r) => r.publicJwk) };
  }
}
