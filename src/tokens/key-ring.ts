import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { okpThumbprint, prepareCompactJws, signCompactJws } from '../core/compact-jws.js';
import type { Clock } from '../core/clock.js';
import type { Jwk, SigningKeyRecord } from '../core/types.js';
import type { Store } from '../store/store.js';
import { isSealed, sealJwk, unsealJwk } from './key-sealing.js';

interface LoadedKey {
  record: SigningKeyRecord;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/**
 * Writ's signing keys (Ed25519). Keys live in the store so that every instance signs
 * with, and publishes, the same set. The newest un-rotated key signs; every key not
 * retired stays in the JWKS so tokens signed before a rotation still verify.
 */
export class KeyRing {
  private keys: LoadedKey[] = [];
  private lastRefresh = 0;
  /** the reload running now, and the one queued behind it (see reload()) */
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;

  /** @param kek the key that seals private keys at rest (key-sealing.ts), when configured */
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly kek: Buffer | null = null,
  ) {}

  private openPrivate(record: SigningKeyRecord): Jwk {
    if (!isSealed(record.privateJwk)) return record.privateJwk;
    if (!this.kek) throw new Error(`signing key \`${record.kid}\` is sealed: set WRIT_KEY_ENCRYPTION_KEY`);
    return unsealJwk(record.privateJwk, record.kid, this.kek);
  }

  /**
   * Loads the keys; creates the first one on a new store. The store adds a first key
   * only while none signs, under a lock: instances starting together on an empty
   * store agree on one key (the losers load the winner's).
   */
  async init(): Promise<void> {
    await this.reload();
    if (!this.signingKeyOrNull()) {
      const record = this.newRecord();
      await this.store.addFirstSigningKey(record, { type: 'key.created', actor: 'system', data: { kid: record.kid } });
      await this.reload();
    }
  }

  private newRecord(): SigningKeyRecord {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const pub = publicKey.export({ format: 'jwk' }) as Jwk;
    const kid = okpThumbprint(pub);
    return {
      kid,
      publicJwk: { ...pub, kid, alg: 'EdDSA', use: 'sig' },
      privateJwk: this.kek ? sealJwk(privateKey.export({ format: 'jwk' }) as Jwk, kid, this.kek) : (privateKey.export({ format: 'jwk' }) as Jwk),
      createdAt: this.clock.now(),
      rotatedAt: null,
      retiredAt: null,
    };
  }

  /**
   * Makes a new key the signing key. The keys it replaces stay in the JWKS for
   * `publishSeconds` (at least the longest token lifetime), so that every token they
   * signed can still be verified until it expires, then drop out.
   */
  async rotate(actor: string, publishSeconds: number): Promise<SigningKeyRecord> {
    const record = this.newRecord();
    const previous = this.keys.filter((k) => k.record.rotatedAt === null).map((k) => k.record.kid);
    const retireAt = record.createdAt + publishSeconds * 1000;
    await this.store.rotateSigningKeys(record, retireAt, { type: 'key.rotated', actor, data: { kid: record.kid, previous, previous_retire_at: retireAt } });
    await this.reload();
    return record;
  }

  /**
   * Reloads from the store. Unless forced, at most once a second (the periodic sweep,
   * the JWKS endpoint). Forced: always, through reload().
   */
  async refresh(force = false): Promise<void> {
    if (!force && this.clock.now() - this.lastRefresh < 1000) return;
    await this.reload();
  }

  /**
   * A reload that starts after this call: what another instance committed before the
   * call is loaded when it resolves. Concurrent callers share reloads: while one runs,
   * every new caller waits for the one queued behind it (the running one may have read
   * the store too early for them), so a burst of unknown `kid`s costs at most two reads.
   * A reload is never skipped because another ran shortly before.
   */
  reload(): Promise<void> {
    if (!this.running) {
      this.running = this.load().finally(() => {
        this.running = null;
      });
      return this.running;
    }
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.reload();
      });
    return this.queued;
  }

  private async load(): Promise<void> {
    const now = this.clock.now();
    this.lastRefresh = now;
    const records = await this.store.listSigningKeys();
    this.keys = records
      .filter((r) => r.retiredAt === null || r.retiredAt > now)
      .map((record) => ({
        record,
        privateKey: createPrivateKey({ key: this.openPrivate(record) as never, format: 'jwk' }),
        publicKey: createPublicKey({ key: record.publicJwk as never, format: 'jwk' }),
      }));
  }

  private signingKeyOrNull(): LoadedKey | null {
    let best: LoadedKey | null = null;
    for (const k of this.keys) {
      if (k.record.rotatedAt !== null) continue;
      if (!best || k.record.createdAt > best.record.createdAt || (k.record.createdAt === best.record.createdAt && k.record.kid > best.record.kid)) best = k;
    }
    return best;
  }

  /**
   * Signs a compact JWS (RFC 7515 §7.1) with node:crypto directly: this is the hot
   * path of every allow. Every verification goes through jose.
   */
  signJwt(typ: string, claims: Record<string, unknown>): string {
    const key = this.signingKeyOrNull();
    if (!key) throw new Error('no signing key is loaded');
    return signCompactJws(key.privateKey, key.record.kid, typ, claims);
  }

  /**
   * `signJwt` in two steps: the key is chosen and the token's bytes fixed now (throwing
   * as signJwt would), the signature made when the returned function is called. The
   * authorize commit signs an action token while its audit entry's flush is in flight.
   */
  prepareJwt(typ: string, claims: Record<string, unknown>): () => string {
    const key = this.signingKeyOrNull();
    if (!key) throw new Error('no signing key is loaded');
    return prepareCompactJws(key.privateKey, key.record.kid, typ, claims);
  }

  /** The public key for `kid`, or null (callers reload once on a miss). */
  publicKey(kid: string): KeyObject | null {
    const k = this.keys.find((x) => x.record.kid === kid);
    // a key past its retirement verifies nothing, even before the next reload drops it
    if (!k || (k.record.retiredAt !== null && k.record.retiredAt <= this.clock.now())) return null;
    return k.publicKey;
  }

  jwks(): { keys: Jwk[] } {
    return { keys: this.keys.map((k) => k.record.publicJwk) };
  }

  ready(): boolean {
    return this.signingKeyOrNull() !== null;
  }
}
