import { readFileSync } from 'node:fs';
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
