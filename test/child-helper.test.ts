// test/helpers/child.ts: readiness waits follow events and fail with the child's output;
// stopping a child ends its whole process group.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, it } from 'node:test';
import { READY_TIMEOUT_MS, runChild, spawnChild } from './helpers/child.js';

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const node = (code: string) => [process.execPath, ['-e', code]] as const;

describe('test child processes', () => {
  it('waits for a line, whether it came before or after the wait started', async (t) => {
    const c = spawnChild(...node('console.log("one"); setTimeout(() => console.error("two: 2"), 200); setInterval(() => {}, 1000);'), { owner: t });
    assert.equal(await c.waitForLine((l) => l.startsWith('two')), 'two: 2');
    assert.equal(await c.waitForLine(/^one$/, { stream: 'stdout' }), 'one');
    await assert.rejects(c.waitForLine(/two/, { stream: 'stdout', timeoutMs: 300 }), /no line matching \/two\/ within 300 ms[\s\S]*--- stdout ---\none[\s\S]*--- stderr ---\ntwo: 2/);
  });

  it('a wait fails at once, with the output, when the child exits first', async () => {
    const c = spawnChild(...node('console.error("config file missing"); process.exit(3);'));
    const t0 = Date.now();
    await assert.rejects(c.waitForLine(/listening/), (e: Error) => {
      assert.match(e.message, /exited \(code 3, signal null\) before a line matching \/listening\//);
      assert.match(e.message, /config file missing/);
      return true;
    });
    assert.ok(Date.now() - t0 < READY_TIMEOUT_MS);
    assert.ok(READY_TIMEOUT_MS >= 60_000, 'readiness waits default to at least 60 s');
  });

  it('waits for a port to accept', async (t) => {
    const server = net.createServer();
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    const { port } = server.address() as net.AddressInfo;
    await new Promise<void>((ok) => server.close(() => ok()));
    const c = spawnChild(...node(`setTimeout(() => require('node:net').createServer().listen(${port}, '127.0.0.1'), 300);`), { owner: t });
    await c.waitForPort(port);
    await c.stop();
    await assert.rejects(c.waitForPort(port, { timeoutMs: 200 }), /exited/);
  });

  it('stop ends the whole group, SIGKILL after the grace when SIGTERM is ignored', async () => {
    const c = spawnChild(
      ...node(`process.on('SIGTERM', () => {}); const g = require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }); console.log('grandchild ' + g.pid); setInterval(() => {}, 1000);`),
    );
    const grandchild = Number((await c.waitForLine(/^grandchild \d+$/)).split(' ')[1]);
    assert.ok(alive(grandchild));
    await c.stop({ graceMs: 300 });
    assert.equal((await c.exited).signal, 'SIGKILL');
    for (let i = 0; i < 100 && alive(grandchild); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(alive(c.pid), false);
    assert.equal(alive(grandchild), false, 'the grandchild went with its group');
  });

  it('runChild returns code and output, and kills a hung run past its timeout with the output', async () => {
    const r = await runChild(...node('console.log("out"); console.error("err"); process.exit(2);'));
    assert.deepEqual([r.code, r.stdout, r.stderr], [2, 'out\n', 'err\n']);
    // sh, not node: it prints at once even on a loaded machine, well within the limit
    await assert.rejects(runChild('sh', ['-c', 'echo started; sleep 1000'], { timeoutMs: 3000 }), /still running after 3000 ms, killed: sh -c[\s\S]*started/);
  });
});
