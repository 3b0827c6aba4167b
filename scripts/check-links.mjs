#!/usr/bin/env node
// Checks the cross-references of every Markdown file in the repository (node_modules and
// .git left out): each relative link must name a file or directory that exists, and each
// `#anchor` (in the same file or another Markdown file) a heading there, slugged as GitHub
// does. Links in code blocks and code spans are not links. External links (a scheme such as
// https:, mailto:) are not fetched. Also refuses references a reader of the repository cannot
// open (design sections and notes kept elsewhere).
//
//   node scripts/check-links.mjs [ROOT]    exit 0 when every reference resolves, 1 otherwise
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SKIP_DIRS = new Set(['node_modules', '.git']);

/** Every *.md under `root`, relative paths, sorted. */
export function markdownFiles(root) {
  const out = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      if (SKIP_DIRS.has(name)) continue;
      const p = join(dir, name);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else if (name.toLowerCase().endsWith('.md')) out.push(relative(root, p));
    }
  };
  walk(root);
  return out.sort();
}

/**
 * The text with fenced code blocks and code spans blanked out (lengths and line breaks
 * kept, so positions still give line numbers).
 */
export function withoutCode(text) {
  // code spans: a run of backticks up to the same run (CommonMark §6.1)
  return blankFences(text).replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (s) => s.replace(/[^\n]/g, ' '));
}

/** GitHub's heading anchors: lowercase, punctuation dropped, spaces to `-`, repeats numbered. */
export function headingAnchors(text) {
  const anchors = new Set();
  const seen = new Map();
  for (const line of blankFences(text).split('\n')) {
    const m = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const slug = m[1]
      .replace(/<[^>]+>/g, '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M}\p{Pc} -]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  // explicit anchors: <a name="x"> / id="x"
  for (const m of text.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(m[1]);
  return anchors;
}

/** The text with fenced code blocks blanked (CommonMark §4.5: closed by a fence of the same character, at least as long). */
function blankFences(text) {
  const lines = text.split('\n');
  let fence = null;
  for (let i = 0; i < lines.length; i++) {
    const m = /^ {0,3}(`{3,}|~{3,})/.exec(lines[i]);
    if (fence) {
      if (m && m[1][0] === fence[0] && m[1].length >= fence.length && /^\s*(`{3,}|~{3,})\s*$/.test(lines[i])) fence = null;
      lines[i] = ' '.repeat(lines[i].length);
    } else if (m) {
      fence = m[1];
      lines[i] = ' '.repeat(lines[i].length);
    }
  }
  return lines.join('\n');
}

/** Inline links and images `[t](target "title")`, autolinks aside, and reference definitions `[x]: target`. */
export function linkTargets(text) {
  const clean = withoutCode(text);
  const out = [];
  const lineOf = (index) => clean.slice(0, index).split('\n').length;
  for (const m of clean.matchAll(/!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/g)) out.push({ target: m[1], line: lineOf(m.index) });
  for (const m of clean.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/gm)) out.push({ target: m[1], line: lineOf(m.index) });
  return out;
}

/** References a reader of the repository cannot follow: sections of a design kept elsewhere, notes outside it. */
const DANGLING = [/\bdesign(?:\.md|'s)?\s+§\s*\d/i, /\bsession notes\b/i, /\bnotes (?:kept )?outside the repo/i];

/** Problems in the Markdown files under `root`: `file:line: message`. */
export function checkLinks(root) {
  const problems = [];
  const anchorCache = new Map();
  const anchorsOf = (abs) => {
    if (!anchorCache.has(abs)) anchorCache.set(abs, headingAnchors(readFileSync(abs, 'utf8')));
    return anchorCache.get(abs);
  };
  for (const file of markdownFiles(root)) {
    const abs = join(root, file);
    const text = readFileSync(abs, 'utf8');
    for (const { target, line } of linkTargets(text)) {
      if (target === '' || /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue;
      const hash = target.indexOf('#');
      const pathPart = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
      const anchor = hash < 0 ? null : decodeURIComponent(target.slice(hash + 1));
      const dest = pathPart === '' ? abs : pathPart.startsWith('/') ? join(root, pathPart) : resolve(dirname(abs), pathPart);
      if (pathPart !== '' && !existsSync(dest)) {
        problems.push(`${file}:${line}: \`${target}\`: no such file \`${relative(root, dest)}\``);
        continue;
      }
      if (anchor === null || anchor === '') continue;
      if (!dest.toLowerCase().endsWith('.md') || statSync(dest).isDirectory()) {
        problems.push(`${file}:${line}: \`${target}\`: an anchor into a file that is not Markdown`);
        continue;
      }
      if (!anchorsOf(dest).has(anchor)) problems.push(`${file}:${line}: \`${target}\`: no heading \`#${anchor}\` in \`${relative(root, dest)}\``);
    }
    const prose = withoutCode(text);
    for (const pattern of DANGLING) {
      for (const m of prose.matchAll(new RegExp(pattern.source, `${pattern.flags}g`))) {
        problems.push(`${file}:${prose.slice(0, m.index).split('\n').length}: \`${m[0]}\` refers to something outside the repository`);
      }
    }
  }
  return problems;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
  const problems = checkLinks(root);
  for (const p of problems) console.error(p);
  const files = markdownFiles(root).length;
  if (problems.length) {
    console.error(`${problems.length} broken reference(s) in ${files} Markdown files`);
    process.exit(1);
  }
  console.log(`links ok: ${files} Markdown files`);
}
