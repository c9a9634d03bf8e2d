import type * as z from 'zod';
import { ValidationError } from './errors';

/** Renders a zod issue path as the dotted field name a caller sent, e.g. `config.client_id` or `resource[1].name`. */
function fieldOf(path: readonly PropertyKey[], prefix: string): string {
  let field = prefix;
  for (const part of path) {
    field += typeof part === 'number' ? `[${part}]` : field ? `.${String(part)}` : String(part);
  }
  return field || '(body)';
}

/**
 * Parses `value` with `schema`, or throws a ValidationError whose message names every offending field and
 * what is wrong with it. Input values are never echoed back (they may be secrets).
 */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, prefix = ''): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({
        field: fieldOf([...issue.path, key], prefix),
        message: 'unknown field',
      }));
    }
    return [{ field: fieldOf(issue.path, prefix), message: issue.message }];
  });
  throw new ValidationError(issues.map((i) => `${i.field}: ${i.message}`).join('; '), {
    context: { issues },
  });
}
