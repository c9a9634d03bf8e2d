import { randomUUID } from 'node:crypto';
import type { Logger } from '@aws-lambda-powertools/logger';
import { type AuthorityPolicy, tokenEndpointFor } from './authority';
import { storedClientSecret } from './credentials/credential';
import { ConflictError, NotFoundError, ValidationError } from './errors';
import type { SecretStore } from './secret-store';
import {
  ServiceInputSchema,
  type ServiceRecord,
  type ServiceView,
  splitInput,
  toServiceView,
} from './service-config';
import type { ServiceRegistry } from './service-registry';
import type { TokenCache } from './token-cache';
import { parseOrThrow } from './validation';

/** At most this many services in one `{"resource": [...]}` request. */
export const MAX_SERVICES_PER_REQUEST = 25;

export interface ServiceAdministrationDependencies {
  registry: ServiceRegistry;
  secrets: SecretStore;
  cache: TokenCache;
  authority: AuthorityPolicy;
  logger: Logger;
  /** Secrets Manager name prefix, ending in `/`. */
  secretPrefix: string;
  now?: () => number;
  newId?: () => string;
}

/** The result of a create request, in the form it was sent (single object or envelope). */
export type CreateResult =
  | { kind: 'single'; service: ServiceView }
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

/**
 * Registers and manages services. Every write keeps the service and its secret together: a secret is never left
 * without its service, nor a service without its secret.
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
   * Creates the services in a request body: one service object, or `{"resource": [...]}`. All are validated
   * before anything is written; if one fails to be written, those written before it are removed again.
   */
  async create(body: unknown): Promise<CreateResult> {
    const { items, envelope } = unwrap(body);
    const inputs = items.map((item, i) =>
      parseOrThrow(ServiceInputSchema, item, envelope ? `resource[${i}]` : ''),
    );
    const seen = new Set<string>();
    for (const input of inputs) {
      if (seen.has(input.name)) throw new ValidationError(`name: "${input.name}" appears more than once`);
      seen.add(input.name);
      this.deps.authority.assertAllowed(tokenEndpointFor(input.config.authority_url, input.config.tenant_id));
    }

    const created: ServiceRecord[] = [];
    try {
      for (const input of inputs) {
        // Cheap early answer; the conditional write in createOne is what really guards the name.
        if (await this.deps.registry.get(input.name)) {
          throw new ConflictError(`a service named "${input.name}" already exists`);
        }
        const { config, clientSecret } = splitInput(input);
        const timestamp = new Date(this.now()).toISOString();
        const version = this.newId();
        const record: ServiceRecord = {
          name: input.name,
          label: input.label ?? input.name,
          description: input.description ?? '',
          type: input.type,
          is_active: input.is_active,
          config,
          secret: { arn: '' },
          version,
          created_at: timestamp,
          updated_at: timestamp,
        };
        await this.createOne(record, clientSecret);
        created.push(record);
      }
    } catch (error) {
      await this.rollBack(created);
      throw error;
    }
    for (const record of created) {
      this.deps.logger.info('service created', { serviceName: record.name, version: record.version });
    }
    const views = created.map(toServiceView);
    return envelope
      ? { kind: 'envelope', services: views }
      : { kind: 'single', service: views[0] as ServiceView };
  }

  /** Writes the secret, then the service; removes the secret again if the service cannot be written. */
  private async createOne(record: ServiceRecord, clientSecret: string): Promise<void> {
    // A fresh name per incarnation: a deleted service's secret keeps its name during its recovery window.
    const secretName = `${this.deps.secretPrefix}${record.name}/${record.version}`;
    record.secret.arn = await this.deps.secrets.create(secretName, storedClientSecret(clientSecret), {
      'token-broker:service': record.name,
    });
    try {
      await this.deps.registry.create(record);
    } catch (error) {
      await this.deleteSecretQuietly(record.secret.arn, record.name);
      throw error;
    }
  }

  private async rollBack(created: readonly ServiceRecord[]): Promise<void> {
    for (const record of created) {
      try {
        await this.deps.registry.delete(record.name, record.version);
      } catch (error) {
        this.deps.logger.error('rollback: service not removed', { serviceName: record.name, error });
        continue;
      }
      await this.deleteSecretQuietly(record.secret.arn, record.name);
    }
  }

  private async deleteSecretQuietly(arn: string, service: string): Promise<void> {
    try {
      await this.deps.secrets.delete(arn);
    } catch (error) {
      // Logged with the ARN so an operator can remove it; the secret is tagged with its service name.
      this.deps.logger.error('rollback: orphan secret left behind', {
        serviceName: service,
        secretArn: arn,
        error,
      });
    }
  }

  /** Every service, without secrets. */
  async list(): Promise<ServiceView[]> {
    return (await this.deps.registry.list()).map(toServiceView);
  }

  /** One service, without its secret; NotFoundError when it does not exist. */
  async get(name: string): Promise<ServiceView> {
    const record = await this.deps.registry.get(name);
    if (!record) throw new NotFoundError(`service "${name}" does not exist`);
    return toServiceView(record);
  }
}
