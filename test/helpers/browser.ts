/**
 * A real browser for the console tests: Debian's chromium (never a downloaded one), driven
 * by playwright-core. Where chromium is missing the tests are skipped and say why
 * (`browserSkip`); scripts/run-tests.mjs finds the same and prints it, as it does for
 * PostgreSQL, and .ci/run installs chromium first.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.WRIT_CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, or false. */
export function browserSkip(): string | false {
  if (process.env.WRIT_SKIP_BROWSER) return process.env.WRIT_SKIP_BROWSER;
  if (!existsSync(CHROMIUM)) return `chromium is not installed at ${CHROMIUM} (apt-get install -y chromium)`;
  return false;
}

/** One headless browser; the caller closes it (in an `after` hook, which runs in every path). */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox'], timeout: 120_000 });
}
