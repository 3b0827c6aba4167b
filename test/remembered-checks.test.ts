import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { destinationProblem } from '../src/core/destination.js';
import { resourceProblem } from '../src/core/resource.js';

/**
 * `destinationProblem` and `resourceProblem` remember their answers for the texts seen last
 * (src/core/remembered.ts). What that must never do: answer one text's verdict for another
 * (one character apart, case apart), turn a refusal into an acceptance when asked again,
 * or change an answer once the memory fills and starts over.
 */
const destinations = ['api.github.com', 'API.github.com', 'api.github.com.', 'api.github.com:443', 'api.github.com:0443', 'evil@api.github.com', '127.1', '127.0.0.1', 'bücher.de', 'xn--bcher-kva.de', 'stdio:local', 'stdio:Local', '[::1]', '[0::1]', 'a'.repeat(1025)];
const resources = ['repo:acme/api', 'repo:acme/../x', 'repo:acme/%2e%2e', 'repo:acme/a..b', 'repo:acme/..;', 'x y', '', 'r'.repeat(1025)];

describe('remembered destination and resource checks', () => {
  it('every text answers as it did the first time, asked again, interleaved, and after the memory starts over', () => {
    const firstD = destinations.map(destinationProblem);
    const firstR = resources.map(resourceProblem);
    // known verdicts: the memory is not answering for a neighbour
    assert.equal(firstD[0], null);
    assert.notEqual(firstD[1], null);
    assert.notEqual(firstD[2], null);
    assert.equal(firstD[3], null);
    assert.notEqual(firstD[4], null);
    assert.notEqual(firstD[5], null);
    assert.notEqual(firstD[6], null);
    assert.equal(firstD[10], null);
    assert.notEqual(firstD[11], null);
    assert.equal(firstR[0], null);
    assert.notEqual(firstR[1], null);
    assert.notEqual(firstR[2], null);
    assert.equal(firstR[3], null);
    for (let round = 0; round < 3; round++) {
      for (let i = destinations.length - 1; i >= 0; i--) assert.equal(destinationProblem(destinations[i]!), firstD[i], destinations[i]);
      for (let i = 0; i < resources.length; i++) assert.equal(resourceProblem(resources[i]!), firstR[i], resources[i]);
      // fill the memory past its size: it starts over, answers unchanged
      for (let j = 0; j < 1100; j++) {
        assert.equal(destinationProblem(`h${round}x${j}.example`), null);
        assert.notEqual(destinationProblem(`H${round}x${j}.example`), null);
        assert.equal(resourceProblem(`doc:${round}/${j}`), null);
      }
    }
  });
});
