/** `npm run docs`: writes the README's generated tables (local/readme-tables.ts). Commit the result. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { environmentTable, withGeneratedBlock } from './readme-tables';

const target = join(import.meta.dirname, '..', 'README.md');
writeFileSync(target, withGeneratedBlock(readFileSync(target, 'utf8'), 'environment', environmentTable()));
console.log(`wrote the configuration table of ${target}`);
