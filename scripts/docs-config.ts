// `npm run docs:config`: writes docs/configuration.md from src/config/settings.ts.
import { writeFileSync } from 'node:fs';
import { renderConfigurationDoc } from '../src/config/settings.js';

const out = new URL('../docs/configuration.md', import.meta.url);
writeFileSync(out, renderConfigurationDoc());
console.log(`wrote ${out.pathname}`);
