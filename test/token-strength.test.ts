import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { newSecret } from '../src/core/ids.js';
import { checkBootstrapToken, estimateSecretBits, MIN_BOOTSTRAP_TOKEN_BITS } from '../src/core/token-strength.js';
import { operatorConfigFromEnv } from '../src/cli/operator-env.js';

describe('bootstrap token strength (estimated from length, character classes and patterns)', () => {
  const weak: [string, string][] = [
    ['24 identical characters', 'a'.repeat(24)],
    ['24 identical digits', '0'.repeat(24)],
    ['64 identical symbols', '!'.repeat(64)],
    ['a repeated pair', 'aB'.repeat(32)],
    ['a repeated phrase', 'Password1!'.repeat(4)],
    ['a repeated random-looking unit', `${'xK9#qT2@'.repeat(8)}`],
    ['a dictionary word', 'administrator'],
    ['a long word, letters only', 'supercalifragilisticexpialidocious'],
    ['words run together', 'correcthorsebatterystaple'],
    ['a letters-only phrase of 40', 'thequickbrownfoxjumpsoverthelazydogagain'],
    ['words with letter swaps', 'p4ssw0rd-s3cr3t-4dm1n-t0k3n-Ch4ng3M3'],
    ['keyboard rows', 'qwertyuiopasdfghjklzxcvbnm1234567890'],
    ['keyboard rows reversed', '0987654321mnbvcxzlkjhgfdsapoiuytrewq'],
    ['an alphabet run', 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'],
    ['the old README example', 'wop_change_me_to_a_long_random_value'],
    ['the old test token', 'wop_test_bootstrap_token_0123456789'],
    ['16 random bytes as 22 base64url (128 bits raw, no margin for the estimate)', 'Zm9vYmFyYmF6cXV4cXV1eA'],
    ['8 random bytes of hex', randomBytes(8).toString('hex')],
    ['two distinct characters, 100 long', 'ab'.repeat(25) + 'ba'.repeat(25)],
    ['empty', ''],
  ];
  for (const [what, token] of weak) {
    it(`refuses ${what}`, () => {
      assert.ok(estimateSecretBits(token) < MIN_BOOTSTRAP_TOKEN_BITS, `${token}: ${estimateSecretBits(token)} bits`);
      assert.throws(() => checkBootstrapToken(token), (e: Error) => e instanceof TypeError && /WRIT_BOOTSTRAP_TOKEN is too weak/.test(e.message) && !e.message.includes(token || '\u0000'));
    });
  }

  it('accepts random tokens of 32 bytes in every usual encoding, and what Writ generates (5,000 samples each; 100,000 each measured: the lowest scores 180 bits)', () => {
    const makers: [string, () => string][] = [
      ['hex', () => randomBytes(32).toString('hex')],
      ['base64', () => randomBytes(32).toString('base64')],
      ['base64url', () => randomBytes(32).toString('base64url')],
      ['newSecret', () => newSecret('wop')],
    ];
    for (const [name, make] of makers) {
      let min = Infinity;
      for (let i = 0; i < 5000; i++) {
        const t = make();
        const bits = estimateSecretBits(t);
        min = Math.min(min, bits);
        assert.ok(bits >= MIN_BOOTSTRAP_TOKEN_BITS, `${name} ${t}: ${bits} bits`);
      }
      assert.ok(min >= MIN_BOOTSTRAP_TOKEN_BITS, name);
    }
    assert.doesNotThrow(() => checkBootstrapToken(randomBytes(32).toString('base64')));
  });
});

describe('WRIT_OPERATOR_TOKEN_TTL', () => {
  it('takes seconds or a number with s, m, h, d; unset keeps the default', () => {
    assert.deepEqual(operatorConfigFromEnv({}), {});
    assert.deepEqual(operatorConfigFromEnv({ WRIT_OPERATOR_TOKEN_TTL: '' }), {});
    assert.deepEqual(operatorConfigFromEnv({ WRIT_OPERATOR_TOKEN_TTL: '3600' }), { operatorTokenTtlSeconds: 3600 });
    assert.deepEqual(operatorConfigFromEnv({ WRIT_OPERATOR_TOKEN_TTL: '90d' }), { operatorTokenTtlSeconds: 90 * 86_400 });
    assert.deepEqual(operatorConfigFromEnv({ WRIT_OPERATOR_TOKEN_TTL: '12h' }), { operatorTokenTtlSeconds: 12 * 3600 });
    assert.deepEqual(operatorConfigFromEnv({ WRIT_OPERATOR_TOKEN_TTL: '30m' }), { operatorTokenTtlSeconds: 1800 });
  });
  for (const bad of ['0', '59', '0d', '-1d', '1.5d', '90 d', '90days', '1w', 'never', '3651d', '99999999999', '1e6', '0x10']) {
    it(`refuses \`${bad}\``, () => {
      assert.throws(() => operatorConfigFromEnv({ WRIT_OPERATOR_TOKEN_TTL: bad }), /WRIT_OPERATOR_TOKEN_TTL must be/);
    });
  }
});
