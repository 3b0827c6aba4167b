/**
 * Executable documentation: the fenced code blocks of a Markdown file, each with the
 * marker that says what a test does with it. The marker is an HTML comment on the line
 * before the fence (blank lines between are allowed), so readers never see it:
 *
 *   <!-- doc-test: setup -->           shell: the start of every session (README only:
 *                                      defines `writ`, starts a fresh Writ)
 *   <!-- doc-test: run -->             shell: run as printed, in document order, in one
 *                                      bash session (what a reader pasting into one terminal does)
 *   <!-- doc-test: file PATH -->       written to PATH (shell variables expanded) at that
 *                                      point of the session, byte for byte
 *   <!-- doc-test: policy -->          Cedar: must parse and validate against Writ's schema
 *                                      (strict), as `writ policy set` would accept it
 *   <!-- doc-test: skip (why) -->      not run: a fragment, a placeholder, a long-running
 *                                      process, an external dependency; the reason is required
 *
 * A fence without a marker is an error, so a new block has to be classified.
 */

export type BlockKind = 'setup' | 'run' | 'file' | 'policy' | 'skip';

export interface DocBlock {
  file: string;
  /** 1-based line of the opening fence */
  line: number;
  kind: BlockKind;
  /** `file`: the path; `skip`: the reason */
  arg: string;
  lang: string;
  body: string;
}

const MARKER = /^<!--\s*doc-test:\s*(setup|run|file|policy|skip)\b\s*(.*?)\s*-->\s*$/;
const FENCE = /^(\s*)(`{3,}|~{3,})(.*)$/;

export function parseDocBlocks(markdown: string, file: string): { blocks: DocBlock[]; errors: string[] } {
  const lines = markdown.split('\n');
  const blocks: DocBlock[] = [];
  const errors: string[] = [];
  let pending: { kind: BlockKind; arg: string; line: number } | null = null;
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!;
    const marker = MARKER.exec(text);
    if (marker) {
      if (pending) errors.push(`${file}:${pending.line + 1}: a doc-test marker with no code block after it`);
      pending = { kind: marker[1] as BlockKind, arg: marker[2]!, line: i };
      continue;
    }
    const fence = FENCE.exec(text);
    if (!fence) {
      if (pending && text.trim() !== '') {
        errors.push(`${file}:${pending.line + 1}: a doc-test marker not directly before a code block`);
        pending = null;
      }
      continue;
    }
    const [, indent, ticks, info] = fence;
    const close = new RegExp(`^\\s*${ticks![0] === '`' ? '`' : '~'}{${ticks!.length},}\\s*$`);
    let end = i + 1;
    while (end < lines.length && !close.test(lines[end]!)) end++;
    if (end >= lines.length) {
      errors.push(`${file}:${i + 1}: a code block that is never closed`);
      break;
    }
    const body = lines
      .slice(i + 1, end)
      .map((l) => (indent && l.startsWith(indent) ? l.slice(indent.length) : l))
      .join('\n');
    const lang = info!.trim().split(/\s+/)[0] ?? '';
    if (!pending) {
      errors.push(`${file}:${i + 1}: a code block without a doc-test marker (run, setup, file PATH, policy or skip (why))`);
    } else {
      if (pending.kind === 'skip' && !/^\(.+\)$/.test(pending.arg)) errors.push(`${file}:${pending.line + 1}: \`skip\` needs a reason: <!-- doc-test: skip (why) -->`);
      if (pending.kind === 'file' && pending.arg === '') errors.push(`${file}:${pending.line + 1}: \`file\` needs a path`);
      if (pending.kind === 'policy' && lang !== 'cedar') errors.push(`${file}:${i + 1}: a \`policy\` block is \`cedar\``);
      if ((pending.kind === 'run' || pending.kind === 'setup') && !['sh', 'bash', 'shell'].includes(lang)) {
        errors.push(`${file}:${i + 1}: only shell blocks can be run (this one is \`${lang || 'untyped'}\`)`);
      }
      blocks.push({ file, line: i + 1, kind: pending.kind, arg: pending.arg, lang, body: `${body}\n` });
    }
    pending = null;
    i = end;
  }
  if (pending) errors.push(`${file}:${pending.line + 1}: a doc-test marker with no code block after it`);
  return { blocks, errors };
}

/**
 * One bash session: the blocks in order, `file` blocks as here-documents (the delimiter
 * is checked not to occur in the text, so the file is written byte for byte).
 */
export function sessionScript(blocks: DocBlock[]): string {
  const parts: string[] = [];
  for (const b of blocks) {
    parts.push(`# --- ${b.file}:${b.line} (${b.kind}) ---`);
    if (b.kind === 'file') {
      const delimiter = 'WRIT_DOC_TEST_EOF';
      if (b.body.split('\n').includes(delimiter)) throw new Error(`${b.file}:${b.line}: the block contains the line ${delimiter}`);
      // the path is expanded by the shell (it may name $WRIT_DIR); the body is not
      parts.push(`cat > "${b.arg}" <<'${delimiter}'\n${b.body}${delimiter}`);
    } else if (b.kind === 'run' || b.kind === 'setup') {
      parts.push(b.body);
    }
  }
  return `${parts.join('\n')}\n`;
}
