// `npm run openapi`: writes docs/openapi.json from the wire schemas (src/wire/openapi.ts).
import { writeFileSync } from 'node:fs';
import { buildOpenApi } from '../src/wire/openapi.js';

const out = new URL('../docs/openapi.json', import.meta.url);
writeFileSync(out, JSON.stringify(buildOpenApi(), null, 2) + '\n');
console.log(`wrote ${out.pathname}`);
