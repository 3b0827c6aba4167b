import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { createNoteSigner, NoteError, openNote, parseNoteSignerKey, parseNoteVerifierKey, signNote } from '../src/audit/signed-note.js';
import { CheckpointFormatError, formatCheckpoint, parseCheckpoint } from '../src/audit/tlog-checkpoint.js';

// Test vectors of Go's golang.org/x/mod/sumdb/note (note_test.go), the reference
// implementation of C2SP signed-note.
const PETER_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG = '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
const ENOCH_SIG = '\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n';

describe('C2SP signed-note', () => {
  it('signs exactly as the Go reference does', () => {
    const signer = parseNoteSignerKey(PETER_SKEY);
    assert.equal(signer.verifierKey, PETER_VKEY);
    assert.equal(signNote(TEXT, [signer]), `${TEXT}\n${PETER_SIG}`);
  });

  it('opens the reference note with one or both keys', () => {
    const peter = parseNoteVerifierKey(PETER_VKEY);
    const enoch = parseNoteVerifierKey(ENOCH_VKEY);
    const one = openNote(`${TEXT}\n${PETER_SIG}${ENOCH_SIG}`, [peter]);
    assert.equal(one.text, TEXT);
    assert.deepEqual(one.verified.map((s) => s.name), ['PeterNeumann']);
    assert.deepEqual(one.unverified.map((s) => s.name), ['EnochRoot']);
    const both = openNote(`${TEXT}\n${PETER_SIG}${ENOCH_SIG}`, [peter, enoch]);
    assert.equal(both.verified.length, 2);
  });

  it('rejects a mangled verifier key (every truncation and every byte bumped)', () => {
    parseNoteVerifierKey(PETER_VKEY);
    const b = Buffer.from(PETER_VKEY);
    for (let i = 0; i < b.length; i++) {
      b[i]! += 1;
      assert.throws(() => parseNoteVerifierKey(b.toString()), Error, `byte ${i}`);
      b[i]! -= 1;
    }
    for (let j = 1; j < PETER_VKEY.length; j++) assert.throws(() => parseNoteVerifierKey(PETER_VKEY.slice(0, j)));
    assert.throws(() => parseNoteVerifierKey('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'), NoteError);
  });

  it('rejects a bad signature, an unknown key, no signature and malformed notes', () => {
    const peter = parseNoteVerifierKey(PETER_VKEY);
    const enoch = parseNoteVerifierKey(ENOCH_VKEY);
    assert.throws(() => openNote(`${TEXT}\n${PETER_SIG.slice(0, 60)}ABCD${PETER_SIG.slice(60)}`, [peter]), /invalid signature/);
    assert.throws(() => openNote(`${TEXT}\n${ENOCH_SIG}`, [peter]), /no verifiable signature/);
    assert.throws(() => openNote(`${TEXT}\n${ENOCH_SIG}`, [enoch, peter, enoch]), /ambiguous/);
    // the signed text changed by one character
    assert.throws(() => openNote(`${TEXT.replace('answer', 'Answer')}\n${PETER_SIG}`, [peter]), /invalid signature/);
    for (const bad of [
      TEXT,
      `${TEXT}\n`,
      `${TEXT}\n${PETER_SIG.slice(0, -1)}`,
      `${TEXT}\n${PETER_SIG.replace('\u2014 ', '- ')}`,
      `${TEXT}\n${PETER_SIG.replace('PeterNeumann', 'Peter+Neumann')}`,
      `${TEXT}\u0007\n${PETER_SIG}`,
      `${TEXT}\n${PETER_SIG.repeat(101)}`,
    ]) {
      assert.throws(() => openNote(bad, [peter]), NoteError, JSON.stringify(bad.slice(-30)));
    }
  });

  it('round-trips a checkpoint signed with a fresh key; a wrong key fails', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const signer = createNoteSigner('writ.example/audit', privateKey);
    const body = formatCheckpoint({ origin: 'writ.example/audit', size: 12, root: Buffer.alloc(32, 7), extensions: [] });
    const note = signNote(body, [signer]);
    const opened = openNote(note, [parseNoteVerifierKey(signer.verifierKey)]);
    assert.deepEqual(parseCheckpoint(opened.text), { origin: 'writ.example/audit', size: 12, root: Buffer.alloc(32, 7), extensions: [] });
    const other = createNoteSigner('writ.example/audit', generateKeyPairSync('ed25519').privateKey);
    assert.throws(() => openNote(note, [parseNoteVerifierKey(other.verifierKey)]), NoteError);
  });

  it('rejects malformed checkpoint bodies', () => {
    for (const bad of ['o\n12\n', 'o\n012\n' + Buffer.alloc(32).toString('base64') + '\n', 'o\n-1\n' + Buffer.alloc(32).toString('base64') + '\n', '\n1\n' + Buffer.alloc(32).toString('base64') + '\n', 'o\n1\n' + Buffer.alloc(31).toString('base64') + '\n', 'o\n1\n' + Buffer.alloc(32).toString('base64')]) {
      assert.throws(() => parseCheckpoint(bad), CheckpointFormatError, JSON.stringify(bad));
    }
  });
});
