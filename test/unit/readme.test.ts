import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EnvSchema } from '../../functions/config';
import { environmentTable, withGeneratedBlock } from '../../local/readme-tables';

const README = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');

describe('README configuration table', () => {
  it('is the one `npm run docs` writes from the environment schema (run it after changing functions/config.ts)', () => {
    expect(README).toBe(withGeneratedBlock(README, 'environment', environmentTable()));
  });

  it('has a row for every variable of the environment schema', () => {
    const table = environmentTable();
    for (const name of Object.keys(EnvSchema.shape)) expect(table).toContain(`| \`${name}\` |`);
  });

  it('states the default the schema applies, or (required)', () => {
    const table = environmentTable();
    expect(table).toContain('| `TOKEN_BROKER_SERVICES_TABLE` | (required) |');
    expect(table).toContain('| `TOKEN_BROKER_ENTRA_TIMEOUT_MS` | `10000` |');
    expect(table).toContain('| `TOKEN_BROKER_SECRET_KMS_KEY_ID` | AWS managed key |');
  });
});

describe('withGeneratedBlock', () => {
  it('replaces only what stands between the markers', () => {
    const markdown = 'before\n<!-- generated:x -->\nold\n<!-- /generated:x -->\nafter\n';
    expect(withGeneratedBlock(markdown, 'x', 'new')).toBe(
      'before\n<!-- generated:x -->\nnew\n<!-- /generated:x -->\nafter\n',
    );
  });

  it('refuses a document without the markers, naming them', () => {
    expect(() => withGeneratedBlock('no markers', 'x', 'new')).toThrow('<!-- generated:x -->');
  });
});

describe('README "How it works"', () => {
  it('names only files that exist (a bare name is in lib/, a name after a folder is in that folder)', () => {
    const section = README.split('## How it works')[1]?.split('\n## ')[0] ?? '';
    const root = join(__dirname, '..', '..');
    const folders = [...section.matchAll(/`(infra\/token-broker)\/`/g)].map((m) => m[1] as string);
    const named = [...section.matchAll(/(?:[\w-]+\/)*[\w-]+\.ts/g)].map((m) => m[0]);
    expect(named.length).toBeGreaterThan(10);
    const missing = named.filter(
      (name) =>
        !existsSync(join(root, name)) &&
        !existsSync(join(root, 'lib', name)) &&
        !folders.some((folder) => existsSync(join(root, folder, name))),
    );
    expect(missing).toEqual([]);
  });
});
