import type { Redactor } from './secrets.js';

/** A structured log line: `event` plus fields. Never give it a token. */
export type Log = (event: string, fields?: Record<string, unknown>) => void;

/** JSON lines on stderr (stdout is the MCP channel in stdio mode), secrets redacted. */
export function jsonLog(redactor: Redactor, write: (line: string) => void = (l) => process.stderr.write(l)): Log {
  return (event, fields = {}) => {
    let line: string;
    try {
      line = JSON.stringify({ ts: new Date().toISOString(), event, ...fields });
    } catch {
      line = JSON.stringify({ ts: new Date().toISOString(), event, note: 'unserializable fields' });
    }
    write(`${redactor.redact(line)}\n`);
  };
}

export const silentLog: Log = () => undefined;

/** An error's message, short and redacted, for a log line or an outcome detail. */
export function errorText(err: unknown, redactor: Redactor, max = 300): string {
  const e = err as { message?: unknown; code?: unknown };
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  return redactor.redact(msg).slice(0, max);
}
