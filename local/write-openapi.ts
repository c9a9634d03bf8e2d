/** `npm run openapi`: writes openapi.json from the zod schemas (lib/openapi.ts). Commit the result. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildOpenApiDocument } from '../lib/openapi';

const target = join(import.meta.dirname, '..', 'openapi.json');
writeFileSync(target, `${JSON.stringify(buildOpenApiDocument(), null, 2)}\n`);
console.log(`wrote ${target}`);
