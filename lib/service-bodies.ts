/** Parsing and comparing service bodies for lib/service-admin.ts. */
import { ValidationError } from './errors';
import type { ServiceView } from './service-config';

/**
 * At most this many services in one `{"resource": [...]}` request: at normal AWS latency (three calls each) they
 * take about 2-3 s, well inside the admin function's 10 s, with time left to undo them all should one fail.
 */
export const MAX_SERVICES_PER_REQUEST = 25;

/** Splits a request body into service objects, remembering whether it used DreamFactory's envelope. */
export function unwrap(body: unknown): { items: unknown[]; envelope: boolean } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ValidationError('body: must be a service object or {"resource": [service, ...]}');
  }
  if ('resource' in body) {
    const resource = (body as { resource: unknown }).resource;
    const extra = Object.keys(body).filter((k) => k !== 'resource');
    if (extra.length > 0)
      throw new ValidationError(`body: unknown field next to resource: ${extra.join(', ')}`);
    if (!Array.isArray(resource) || resource.length === 0) {
      throw new ValidationError('resource: must be a non-empty array of service objects');
    }
    if (resource.length > MAX_SERVICES_PER_REQUEST) {
      throw new ValidationError(
        `resource: at most ${MAX_SERVICES_PER_REQUEST} services per request (what is sure to be created, or undone, within the request's time); send the rest in further requests`,
      );
    }
    return { items: resource, envelope: true };
  }
  return { items: [body], envelope: false };
}

/** Field names (dotted) whose values differ between two views; for audit logs, never values. */
export function changedFields(before: ServiceView, after: ServiceView): string[] {
  const fields: string[] = [];
  for (const key of ['label', 'description', 'is_active'] as const) {
    if (before[key] !== after[key]) fields.push(key);
  }
  const keys = new Set([...Object.keys(before.config), ...Object.keys(after.config)]);
  for (const key of keys) {
    const a = (before.config as unknown as Record<string, unknown>)[key];
    const b = (after.config as unknown as Record<string, unknown>)[key];
    // JSON, so that lists (return_to_hosts) compare by value.
    if (JSON.stringify(a) !== JSON.stringify(b)) fields.push(`config.${key}`);
  }
  return fields;
}
