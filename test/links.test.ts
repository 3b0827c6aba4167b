import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
// @ts-expect-error: a plain ES module script, no type declarations
import { checkLinks, headingAnchors } from '../scripts/check-links.mjs';
import { REPO } from './helpers/serve-process.js';

describe('Markdown cross-references', () => {
  it('every relative link and #anchor in the repository resolves (scripts/check-links.mjs)', () => {
    assert.deepEqual(checkLinks(REPO), []);
  });

  describe('the checker', () => {
    const root = mkdtempSync(join(tmpdir(), 'writ-links-'));
    after(() => rmSync(root, { recursive: true, force: true }));
    const check = (files: Record<string, string>) => {
      const dir = mkdtempSync(join(root, 'case-'));
      for (const [name, text] of Object.entries(files)) {
        mkdirSync(join(dir, name, '..'), { recursive: true });
        writeFileSync(join(dir, name), text);
      }
      return checkLinks(dir) as string[];
    };

    it('accepts links to files, directories and headings, and ignores external links and code', () => {
      const problems = check({
        'README.md': [
          '# Top',
          '## Five-minute walkthrough (CLI)',
          '### `tools/list`',
          '## Top',
          'See [a](docs/a.md), [dir](docs/), [b](docs/a.md#the-part), [self](#five-minute-walkthrough-cli),',
          '[code](#toolslist), [again](#top-1), [web](https://example.com/x.md), [mail](mailto:a@b.c).',
          '`[not a link](missing.md)`',
          '```md',
          '[nor this](missing.md)',
          '```',
          '[ref]: docs/a.md#the-part',
        ].join('\n'),
        'docs/a.md': '# A\n\n## The part\n\n[back](../README.md#top)\n',
      });
      assert.deepEqual(problems, []);
    });

    it('reports a missing file, a missing anchor, an anchor into a non-Markdown file and a reference definition', () => {
      const problems = check({
        'README.md': [
          '# Top',
          '[gone](docs/gone.md)',
          '[no heading](docs/a.md#nowhere)',
          '[self](#missing)',
          '[file anchor](package.json#x)',
          '',
          '[ref]: other/place.md',
        ].join('\n'),
        'docs/a.md': '# A\n',
        'package.json': '{}',
      });
      assert.equal(problems.length, 5, problems.join('\n'));
      assert.match(problems[0]!, /^README\.md:2: `docs\/gone\.md`: no such file/);
      assert.match(problems[1]!, /^README\.md:3: `docs\/a\.md#nowhere`: no heading `#nowhere`/);
      assert.match(problems[2]!, /^README\.md:4: `#missing`: no heading/);
      assert.match(problems[3]!, /^README\.md:5: .*not Markdown/);
      assert.match(problems[4]!, /^README\.md:7: `other\/place\.md`: no such file/);
    });

    it('looks in every Markdown file but node_modules, and reports references outside the repository', () => {
      const problems = check({
        'docs/deep/x.md': 'as design §5 says; see DESIGN §7 and the session notes\n',
        'node_modules/pkg/README.md': '[broken](nowhere.md)\n',
      });
      assert.equal(problems.length, 3, problems.join('\n'));
      for (const p of problems) assert.match(p, /^docs\/deep\/x\.md:1: .* refers to something outside the repository/);
    });

    it('slugs headings as GitHub does', () => {
      const anchors = headingAnchors('# Enforcement: the MCP gateway & the HTTP proxy\n## Not done (yet)\n## `tools/call`\n## Not done (yet)\n```\n# not a heading\n```\n');
      assert.deepEqual([...anchors], ['enforcement-the-mcp-gateway--the-http-proxy', 'not-done-yet', 'toolscall', 'not-done-yet-1']);
    });
  });
});
