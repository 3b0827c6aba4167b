import { pino, type Logger } from 'pino';
import { UsageError } from './args.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogFormat = 'json' | 'pretty';

/** `WRIT_LOG_LEVEL` (default `info`), checked at start. */
export function logLevelFromEnv(value: string | undefined): (typeof LOG_LEVELS)[number] {
  const v = (value ?? '').trim().toLowerCase();
  if (v === '') return 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(v)) throw new UsageError(`WRIT_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  return v as (typeof LOG_LEVELS)[number];
}

export function logFormatOf(value: string | undefined): LogFormat {
  if (value === undefined || value === 'json') return 'json';
  if (value === 'pretty') return 'pretty';
  throw new UsageError('`--log-format` must be `json` or `pretty`');
}

/** One JSON line rendered for a person: `12:00:00.123 INFO  request GET /v1/tasks/{id} 200 1.2ms key=value`. */
export function prettyLine(line: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { time, level, msg, ...rest } = o;
  const t = typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : '';
  const name = typeof level === 'string' ? level.toUpperCase() : String(level);
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return `${[t, name.padEnd(5), String(msg ?? ''), ...fields].join(' ')}\n`;
}

/**
 * The service's logger: JSON lines on stdout (pino), or the same rendered for a person.
 * Callers never hand it a token, a header or an argument; `redact` is a second net for
 * the usual places one could hide (pino's fast-redact paths).
 */
export function createLogger(options: { level: string; format: LogFormat; write?: (line: string) => void }): Logger {
  const write = options.write ?? ((l: string) => void process.stdout.write(l));
  const stream = { write: (line: string) => write(options.format === 'pretty' ? prettyLine(line) : line) };
  return pino(
    {
      level: options.level,
      base: undefined,
      messageKey: 'msg',
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['authorization', 'token', 'access_token', 'headers.authorization', 'req.headers.authorization', 'req.headers.cookie'], censor: '[redacted]' },
    },
    stream,
  );
}
