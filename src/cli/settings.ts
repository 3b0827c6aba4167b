import { readSettings, type Settings } from '../config/settings.js';
import { flag, UsageError, type ParsedArgs } from './args.js';

/** The settings of `writ serve` / `writ migrate`: flags over the environment over `--config FILE`. */
export function settingsOf(args: ParsedArgs): Settings {
  try {
    return readSettings({
      env: process.env,
      flags: { host: flag(args, 'host'), port: flag(args, 'port'), 'data-dir': flag(args, 'data-dir'), issuer: flag(args, 'issuer'), gateway: flag(args, 'gateway') },
      file: flag(args, 'config'),
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
