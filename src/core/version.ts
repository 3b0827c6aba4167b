import { readFileSync } from 'node:fs';

/** The package version (from package.json, two levels up from src/core or dist/core). */
export const WRIT_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
})();
