import { readSettings, SETTINGS, type Settings } from '../config/settings.js';
import { flag, UsageError, type ParsedArgs } from './args.js';

/** The settings of `writ serve` / `writ migrate`: flags over the environment over `--config FILE`. */
export function settingsOf(args: ParsedArgs): Settings {
  try {
    return readSettings({
      env: process.env,
      // every setting's flag (`--port`, `--tls-cert`, …); a command that does not take one never has it set
      flags: Object.fromEntries(Object.values(SETTINGS).flatMap((s) => ('flag' in s ? [[s.flag, flag(args, s.flag)]] : []))),
      file: flag(args, 'config'),
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
