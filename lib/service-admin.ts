import { randomUUID } from 'node:crypto';
import type { Logger } from '@aws-lambda-powertools/logger';
import { type AuthorityPolicy, tokenEndpointFor } from './authority';
import { storedClientSecret } from './credentials/credential';
import { ConflictError, NotFoundError, PreconditionFailedError, ValidationError } from './errors';
import { MANAGED_SECRET_TAG, type SecretReferencePolicy } from './secret-reference';
import type { SecretStore } from './secret-store';
import {
  type SecretInput,
  type SecretReference,
  ServiceInputSchema,
  ServiceMergedSchema,
  ServicePatchSchema,
  type ServiceRecord,
  type ServiceView,
  splitInput,
  toEditableInput,
  toServiceView,
} from './service-config';
import type { ServiceRegistry } from './service-registry';
import type { TokenCache } from './token-cache';
import { parseOrThrow } from './validation';

/** At most this many services in one `{"resource": [...]}` request. */
export const MAX_SERVICES_PER_REQUEST = 25;

/** Days a deleted service's secret can still be restored (Secrets Manager's minimum is 7). */
export const SECRET_RECOVERY_WINDOW_DAYS = 7;

export interface ServiceAdministrationDependencies {
  registry: ServiceRegistry;
  secrets: SecretStore;
  cache: TokenCache;
  authority: AuthorityPolicy;
  secretReferences: SecretReferencePolicy;
  logger: Logger;
  /** Secrets Manager name prefix, ending in `/`. */
  secretPrefix: string;
  now?: () => number;
  newId?: () => string;
}

/** A service as returned to administrators, with its version (the ETag). */
export interface VersionedView {
  service: ServiceView;
  version: string;
}

/** The result of a create request, in the form it was sent (single object or envelope). */
export type CreateResult =
  | { kind: 'single'; created: VersionedView }
  | { kind: 'envelope'; services: ServiceView[] };

/** Splits a request body into service objects, remembering whether it used DreamFactory's envelope. */
function unwrap(body: unknown): { items: unknown[]; envelope: boolean } {
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
      throw new ValidationError(`resource: at most ${MAX_SERVICES_PER_REQUEST} services per request`);
    }
    return { items: resource, envelope: true };
  }
  return { items: [body], envelope: false };
}

/** Field names (dotted) whose values differ between two views; for audit logs, never values. */
function changedFields(before: ServiceView, after: ServiceView): string[] {
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

/**
 * Registers and manages services. Every write keeps the service and its secret together: a secret is never left
 * without its service, nor a service without its secret. Every write gives the service a new version, which is
 * part of every cache key: the service's cached tokens become unreachable at once, on every instance.
 */
export class ServiceAdministration {
  private readonly deps: ServiceAdministrationDependencies;
  private readonly now: () => number;
  private readonly newId: () => string;

  constructor(deps: ServiceAdministrationDependencies) {
    this.deps = deps;
    this.now = deps.now ?? Date.now;
    this.newId = deps.newId ?? randomUUID;
  }

  /**
   * Checks what cannot be checked by the schema alone: authority host and secret reference (a complete ARN of an
   * existing secret the service may use; never another service's managed secret).
   */
  private async checkReferences(
    name: string,
    config: ServiceRecord['config'],
    secret: SecretInput,
  ): Promise<void> {
    this.deps.authority.assertAllowed(tokenEndpointFor(config.authority_url, config.tenant_id));
    if (secret && 'clientSecretArn' in secret) {
      const arn = secret.clientSecretArn;
      this.deps.secretReferences.assertAllowed(arn, name);
      this.deps.secretReferences.assertUsable(arn, await this.deps.secrets.describe(arn), name);
    }
  }

  /** Stores the secret a write brings: a new managed secret for a value, a reference for an ARN. */
  private async storeSecret(
    name: string,
    version: string,
    secret: NonNullable<SecretInput>,
  ): Promise<SecretReference> {
    if ('clientSecretArn' in secret) return { arn: secret.clientSecretArn, managed: false };
    // A fresh secret per version: a write that fails can drop it without touching the secret in use, and a
    // deleted service's secret keeps its name during its recovery window.
    const arn = await this.deps.secrets.create(
      `${this.deps.secretPrefix}${name}/${version}`,
      storedClientSecret(secret.clientSecret),
      // The tag marks it as this service's own: no other service may reference it (SecretReferencePolicy).
      { [MANAGED_SECRET_TAG]: name },
    );
    return { arn, managed: true };
  }

  /**
   * Creates the services in a request body: one service object, or `{"resource": [...]}`. All are validated
   * before anything is written; if one fails to be written, those written before it are removed again.
   */
  async create(body: unknown): Promise<CreateResult> {
    const { items, envelope } = unwrap(body);
    const inputs = items.map((item, i) =>
      parseOrThrow(ServiceInputSchema, item, envelope ? `resource[${i}]` : ''),
    );
    const seen = new Set<string>();
    const prepared = [];
    for (const input of inputs) {
      if (seen.has(input.name)) throw new ValidationError(`name: "${input.name}" appears more than once`);
      seen.add(input.name);
      const { config, secret } = splitInput(input);
      await this.checkReferences(input.name, config, secret);
      prepared.push({ input, config, secret: secret as NonNullable<SecretInput> });
    }

    const created: ServiceRecord[] = [];
    try {
      for (const { input, config, secret } of prepared) {
        // Cheap early answer; the conditional write below is what really guards the name.
        if (await this.deps.registry.get(input.name)) {
          throw new ConflictError(`a service named "${input.name}" already exists`);
        }
        const timestamp = new Date(this.now()).toISOString();
        const version = this.newId();
        const record: ServiceRecord = {
          name: input.name,
          label: input.label ?? input.name,
          description: input.description ?? '',
          type: input.type,
          is_active: input.is_active,
          config,
          secret: await this.storeSecret(input.name, version, secret),
          version,
          created_at: timestamp,
          updated_at: timestamp,
        };
        try {
          await this.deps.registry.create(record);
        } catch (error) {
          // The write may have been applied even though it reported failure (a lost response): remove our
          // record first, or it would be left pointing at a deleted secret. Someone else's record is kept.
          await this.deps.registry.delete(record.name, record.version).catch(() => undefined);
          await this.dropSecret(record.secret, record.name, 'now');
          throw error;
        }
        created.push(record);
      }
    } catch (error) {
      await this.rollBack(created);
      throw error;
    }
    for (const record of created) {
      this.deps.logger.info('audit: service created', {
        serviceName: record.name,
        version: record.version,
        secretManaged: record.secret.managed,
      });
    }
    const views = created.map(toServiceView);
    return envelope
      ? { kind: 'envelope', services: views }
      : {
          kind: 'single',
          created: { service: views[0] as ServiceView, version: (created[0] as ServiceRecord).version },
        };
  }

  /**
   * Applies a partial update. `ifMatch` (the ETag the caller read) makes a stale write fail with 412; without it,
   * a concurrent write between our read and our write still fails (409) rather than being silently lost.
   */
  async update(name: string, body: unknown, ifMatch?: string): Promise<VersionedView> {
    const patch = parseOrThrow(ServicePatchSchema, body);
    if (patch.name !== undefined && patch.name !== name) {
      throw new ValidationError('name: a service cannot be renamed; create a new one and delete this one');
    }
    const current = await this.deps.registry.get(name);
    if (!current) throw new NotFoundError(`service "${name}" does not exist`);
    if (ifMatch !== undefined && ifMatch !== current.version) {
      throw new PreconditionFailedError(
        `service "${name}" has changed since version ${ifMatch}; read it again`,
      );
    }

    const base = toEditableInput(current);
    const mergedConfig: Record<string, unknown> = { ...(base.config as object), ...patch.config };
    // null returns an optional field (authority_url, the authorization code fields) to its default.
    for (const [field, value] of Object.entries(mergedConfig)) if (value === null) delete mergedConfig[field];
    const { config: _ignored, ...patchTop } = patch;
    const merged = parseOrThrow(ServiceMergedSchema, { ...base, ...patchTop, config: mergedConfig });
    const { config, secret } = splitInput(merged);
    await this.checkReferences(name, config, secret);

    const version = this.newId();
    const next: ServiceRecord = {
      ...current,
      label: merged.label ?? current.label,
      description: merged.description ?? current.description,
      is_active: merged.is_active,
      config,
      secret: secret ? await this.storeSecret(name, version, secret) : current.secret,
      version,
      updated_at: new Date(this.now()).toISOString(),
    };
    try {
      await this.deps.registry.replace(next, current.version);
    } catch (error) {
      if (next.secret.arn !== current.secret.arn) await this.dropSecret(next.secret, name, 'now');
      throw error;
    }
    // The old version's tokens are already unreachable (new version in the key); removing them is tidiness.
    await this.clearQuietly(name);
    if (next.secret.arn !== current.secret.arn) await this.dropSecret(current.secret, name, 'recoverable');

    const before = toServiceView(current);
    const after = toServiceView(next);
    const fields = changedFields(before, after);
    if (secret && 'clientSecret' in secret) fields.push('config.client_secret');
    this.deps.logger.info('audit: service updated', { serviceName: name, version, fields });
    return { service: after, version };
  }

  /** Deletes a service, its cached tokens, and its managed secret (restorable for 7 days). */
  async delete(name: string, ifMatch?: string): Promise<VersionedView> {
    const current = await this.deps.registry.get(name);
    if (!current) throw new NotFoundError(`service "${name}" does not exist`);
    if (ifMatch !== undefined && ifMatch !== current.version) {
      throw new PreconditionFailedError(
        `service "${name}" has changed since version ${ifMatch}; read it again`,
      );
    }
    // The configuration goes first: from that moment no instance serves the service, whatever happens next.
    await this.deps.registry.delete(name, current.version);
    await this.clearQuietly(name);
    await this.dropSecret(current.secret, name, 'recoverable');
    this.deps.logger.info('audit: service deleted', { serviceName: name, version: current.version });
    return { service: toServiceView(current), version: current.version };
  }

  private async rollBack(created: readonly ServiceRecord[]): Promise<void> {
    for (const record of created) {
      try {
        await this.deps.registry.delete(record.name, record.version);
      } catch (error) {
        this.deps.logger.error('rollback: service not removed', { serviceName: record.name, error });
        continue;
      }
      await this.dropSecret(record.secret, record.name, 'now');
    }
  }

  private async clearQuietly(name: string): Promise<void> {
    try {
      await this.deps.cache.clear(name);
    } catch (error) {
      // Unreachable anyway (version or service gone); DynamoDB's TTL removes them within a token lifetime.
      this.deps.logger.warn('stale cached tokens not removed', { serviceName: name, error });
    }
  }

  /** Deletes a managed secret (never one the administrator brought); failures are logged with the ARN. */
  private async dropSecret(
    secret: SecretReference,
    service: string,
    mode: 'now' | 'recoverable',
  ): Promise<void> {
    if (!secret.managed) return;
    try {
      await this.deps.secrets.delete(
        secret.arn,
        mode === 'recoverable' ? { recoveryWindowDays: SECRET_RECOVERY_WINDOW_DAYS } : undefined,
      );
    } catch (error) {
      // Logged with the ARN so an operator can remove it; the secret is tagged with its service name.
      this.deps.logger.error('orphan secret left behind', {
        serviceName: service,
        secretArn: secret.arn,
        error,
      });
    }
  }

  /**
   * Makes a declared service (configuration as code) exist as declared: creates it when missing, updates it when
   * any field differs, and leaves it alone otherwise. A declared `client_secret` value cannot be compared with the
   * stored one without reading it, so declaring one always updates (rotates) the secret.
   */
  async declare(body: unknown): Promise<'created' | 'updated' | 'unchanged'> {
    const input = parseOrThrow(ServiceInputSchema, body);
    const current = await this.deps.registry.get(input.name);
    if (!current) {
      await this.create(body);
      return 'created';
    }
    const { config, secret } = splitInput(input);
    const desired: ServiceView = {
      name: input.name,
      label: input.label ?? input.name,
      description: input.description ?? '',
      type: input.type,
      is_active: input.is_active,
      config: {
        ...config,
        ...(secret && 'clientSecretArn' in secret ? { client_secret_arn: secret.clientSecretArn } : {}),
      },
    };
    const unchanged =
      changedFields(toServiceView(current), desired).length === 0 && !(secret && 'clientSecret' in secret);
    if (unchanged) return 'unchanged';
    const { name: _name, ...patch } = body as Record<string, unknown>;
    const patchConfig = { ...(patch.config as Record<string, unknown>) };
    // Fields the declaration leaves out return to their defaults, as in a fresh create.
    for (const field of ['authority_url', 'user_scopes', 'redirect_uri', 'return_to_hosts', 'prompt']) {
      if (patchConfig[field] === undefined) patchConfig[field] = null;
    }
    await this.update(input.name, {
      ...patch,
      label: desired.label,
      description: desired.description,
      is_active: desired.is_active,
      config: {
        ...patchConfig,
        grant_type: config.grant_type,
        scopes: config.scopes,
        is_client_credentials: config.is_client_credentials,
      },
    });
    return 'updated';
  }

  /** Every service, without secrets. */
  async list(): Promise<ServiceView[]> {
    return (await this.deps.registry.list()).map(toServiceView);
  }

  /** One service, without its secret; NotFoundError when it does not exist. */
  async get(name: string): Promise<VersionedView> {
    const record = await this.deps.registry.get(name);
    if (!record) throw new NotFoundError(`service "${name}" does not exist`);
    return { service: toServiceView(record), version: record.version };
  }
}
