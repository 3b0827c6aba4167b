import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { BatchRefusingReadBuffer } from '../src/gateway/jsonrpc-guard.js';
import { limitedFetch } from '../src/gateway/result-limit.js';

/**
 * The gateway's call path made lean (issue 12 item 6) without letting anything through
 * that it refused before: the stdio batch guard now sits in the transport's read buffer
 * (no stream in front of it), and an upstream's HTTP answer whose declared length is within
 * the limit is no longer copied.
 */

describe('stdio: batches are refused by the read buffer', () => {
  const read = (buf: BatchRefusingReadBuffer) => {
    const out: unknown[] = [];
    for (let m = buf.readMessage(); m; m = buf.readMessage()) out.push(m);
    return out;
  };

  it('answers every batch line with -32600 (leading whitespace, split across chunks) and reads the lines around them', () => {
    const replies: string[] = [];
    const buf = new BatchRefusingReadBuffer((line) => replies.push(line));
    const call = (id: number) => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'x.y', arguments: { text: '[not a batch]' } } });
    const batch = JSON.stringify([JSON.parse(call(2)), JSON.parse(call(3))]);
    const all = Buffer.from(`${call(1)}\n${batch}\n \t\r${batch}\r\n[]\n${call(4)}\r\n`);
    for (let i = 0; i < all.length; i += 13) buf.append(all.subarray(i, i + 13));
    assert.deepEqual(read(buf).map((m: any) => m.id), [1, 4]);
    assert.equal(replies.length, 3);
    for (const r of replies) {
      const m = JSON.parse(r);
      assert.equal(m.id, null);
      assert.equal(m.error.code, -32600);
      assert.match(m.error.message, /batch/);
      assert.ok(r.endsWith('\n'));
    }
  });

  it('throws on what the SDK refuses: a line that is not a JSON-RPC message, and a line over 10 MiB', () => {
    const buf = new BatchRefusingReadBuffer(() => assert.fail('not a batch'));
    buf.append(Buffer.from('{"not":"jsonrpc"}\n'));
    assert.throws(() => buf.readMessage());
    assert.equal(buf.readMessage(), null);
    assert.throws(() => buf.append(Buffer.alloc(10 * 1024 * 1024 + 1, 0x20)), /maximum size/);
  });
});

describe('HTTP upstream: the result size limit with a declared length', () => {
  const request = { method: 'POST', body: JSON.stringify({ jsonrpc: '2.0', id: 42, method: 'tools/call', params: {} }) };
  const fake = (body: string, headers: Record<string, string>): typeof fetch => async () => new Response(body, { status: 200, headers });
  const errorOf = async (res: Response) => ((await res.json()) as { error?: { data?: { writ?: string } }; id?: unknown });

  it('passes an answer declared within the limit as it is, and replaces one declared over it', async () => {
    const small = JSON.stringify({ jsonrpc: '2.0', id: 42, result: { content: [] } });
    const res = await limitedFetch(1000, undefined, fake(small, { 'content-type': 'application/json', 'content-length': String(small.length) }))('http://u.invalid/mcp', request);
    assert.equal(await res.text(), small);
    const dropped: unknown[] = [];
    const big = 'x'.repeat(2000);
    const over = await limitedFetch(1000, (d) => dropped.push(d), fake(big, { 'content-length': String(big.length) }))('http://u.invalid/mcp', request);
    const e = await errorOf(over);
    assert.equal(e.id, 42);
    assert.equal(e.error?.data?.writ, 'result_too_large');
    assert.deepEqual(dropped, [{ id: 42, bytes: 2000 }]);
  });

  it('counts what arrives when the length is not declared, when the answer is chunked or compressed, or the length is malformed', async () => {
    const big = 'y'.repeat(5000);
    const cases: Record<string, string>[] = [{}, { 'content-length': '10', 'transfer-encoding': 'chunked' }, { 'content-length': '10', 'content-encoding': 'gzip' }, { 'content-length': '1e1' }, { 'content-length': '-1' }];
    for (const headers of cases) {
      const res = await limitedFetch(1000, undefined, fake(big, headers))('http://u.invalid/mcp', request);
      assert.equal((await errorOf(res)).error?.data?.writ, 'result_too_large', JSON.stringify(headers));
    }
    // a small gzip body that inflates past the limit (the client decompresses it)
    const bomb = gzipSync(Buffer.alloc(100_000, 0x61));
    assert.ok(bomb.length < 1000);
    const inflating: typeof fetch = async () => new Response(new Blob([bomb]).stream().pipeThrough(new DecompressionStream('gzip')), { headers: { 'content-length': String(bomb.length), 'content-encoding': 'gzip' } });
    assert.equal((await errorOf(await limitedFetch(1000, undefined, inflating)('http://u.invalid/mcp', request))).error?.data?.writ, 'result_too_large');
  });
});
