/**
 * The README's configuration table, generated from the environment schema the handlers validate with
 * (functions/config.ts), the way openapi.json is generated from the API's schemas: `npm run docs` writes it between
 * the README's `<!-- generated:environment -->` markers, and a unit test fails when the committed table differs.
 */
import * as z from 'zod';
import { EnvSchema } from '../functions/config';

/** Read by the libraries the handlers use, not by the handlers' own schema. */
const LIBRARY_VARIABLES: ReadonlyArray<readonly [string[], string, string]> = [
  [['POWERTOOLS_LOG_LEVEL'], '`INFO`', 'Log level of the Powertools logger'],
  [
    ['AWS_ENDPOINT_URL_DYNAMODB', 'AWS_ENDPOINT_URL_SECRETS_MANAGER', 'AWS_ENDPOINT_URL_KMS'],
    'AWS',
    'Point the same adapters at local endpoints (read by functions/aws-json.ts as by the AWS SDKs; `AWS_ENDPOINT_URL` for all)',
  ],
];

/** The README columns of one schema entry. */
function describeVariable(name: string, schema: z.ZodType): { default: string; meaning: string } {
  const meta = schema.meta() as { description?: unknown; unset?: unknown } | undefined;
  if (typeof meta?.description !== 'string' || meta.description.length === 0) {
    throw new Error(`${name} has no description in functions/config.ts (.meta(doc(...)))`);
  }
  let defaultText: string;
  if (schema instanceof z.ZodDefault) {
    const value = schema.def.defaultValue;
    defaultText = value === '' ? '(none)' : `\`${String(value)}\``;
  } else if (schema instanceof z.ZodOptional) {
    defaultText = typeof meta.unset === 'string' ? meta.unset : '(none)';
  } else {
    defaultText = '(required)';
  }
  return { default: defaultText, meaning: meta.description };
}

/** The configuration table, one row per variable of the schema, then those the libraries read. */
export function environmentTable(): string {
  const rows = Object.entries(EnvSchema.shape).map(([name, schema]) => {
    const { default: defaultText, meaning } = describeVariable(name, schema);
    return `| \`${name}\` | ${defaultText} | ${meaning} |`;
  });
  for (const [names, defaultText, meaning] of LIBRARY_VARIABLES) {
    rows.push(`| ${names.map((n) => `\`${n}\``).join(', ')} | ${defaultText} | ${meaning} |`);
  }
  return ['| Variable | Default | Meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

/** `markdown` with the block between `<!-- generated:name -->` and `<!-- /generated:name -->` replaced. */
export function withGeneratedBlock(markdown: string, name: string, content: string): string {
  const begin = `<!-- generated:${name} -->`;
  const end = `<!-- /generated:${name} -->`;
  const start = markdown.indexOf(begin);
  const stop = markdown.indexOf(end);
  if (start < 0 || stop < start) throw new Error(`README has no ${begin} ... ${end} block`);
  return `${markdown.slice(0, start + begin.length)}\n${content}\n${markdown.slice(stop)}`;
}
