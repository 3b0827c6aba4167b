import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { enableStageProfile, stageEnd, takeStageProfile } from '../src/core/stage-profile.js';

describe('per-stage CPU accounting (benchmarks)', () => {
  it('records nothing while off, and charges CPU to the stage a mark ends while on', () => {
    enableStageProfile(false);
    stageEnd('cedar');
    assert.deepEqual(takeStageProfile(), {});
    enableStageProfile(true);
    try {
      let x = 0;
      const until = process.cpuUsage().user + 20_000;
      while (process.cpuUsage().user < until) x += Math.sqrt(x + 1);
      stageEnd('cedar');
      stageEnd('sign');
      stageEnd('http_in');
      const p = takeStageProfile();
      // decision order, whatever the order of the marks
      assert.deepEqual(Object.keys(p), ['http_in', 'cedar', 'sign']);
      assert.ok(p.cedar!.mean_cpu_us >= 15_000, `the busy loop is charged to cedar (${p.cedar!.mean_cpu_us} us)`);
      assert.ok(p.sign!.mean_cpu_us < p.cedar!.mean_cpu_us);
      assert.equal(p.cedar!.count, 1);
      assert.deepEqual(takeStageProfile(), {}, 'taking resets');
    } finally {
      enableStageProfile(false);
    }
  });
});
