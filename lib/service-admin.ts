import { randomUUID } from 'node:crypto';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { AuthorityPolicy } from './authority';
import type { CallOptions } from './call-options';
import type { CreateJournal } from './create-journal';
import { assertCredentialChange } from './credentials/credential-config';
import { NotFoundError, PreconditionFailedError, ValidationError } from './errors';
import { type IssuedCertificate, KmsCertificateRotation } from './kms-certificate-rotation';
import type { KmsCertificates } from './kms-certificates';
import type { SecretReferencePolicy } from './secret-reference';
import type { SecretStore } from './secret-store';
import { changedFields, unwrap } from './service-bodies';
import {
  ServiceInputSchema,
  ServiceMergedSchema,
  ServicePatchSchema,
  type ServiceRecord,
  type ServiceView,
  splitInput,
  toEditableInput,
  topFieldsOf,
  toServiceView,
} from './service-config';
import { type PreparedService, ServiceCreation } from './service-create';
import { ServiceCredentials } from './service-credentials';
import type { ServiceRegistry } from './service-registry';
import type { TokenCache } from './token-cache';
import { parseOrThrow } from './validation';

export { MAX_SERVICES_PER_REQUEST } from './service-bodies';
export { SECRET_RECOVERY_WINDOW_DAYS } from './service-credentials';

export interface ServiceAdministrationDependencies {
  registry: ServiceRegistry;
  secrets: SecretStore;
  cache: TokenCache;
  authority: AuthorityPolicy;
  secretReferences: SecretReferencePolicy;
  logger: Logger;
  /** Secrets Manager name prefix, ending in `/`. */
  secretPrefix: string;
  /** Keeps creates all-or-nothing across a cut-off invocation; without it, only within one (lib-level tests). */
  journal?: CreateJournal;
  /** Whether `credential_type: federated` is available (the broker's roles may get web identity tokens). */
  federationEnabled?: boolean;
  /** Audiences besides api://AzureADTokenExchange a federated service may name (the roles may request them). */
  federationAudiences?: readonly string[];
  /** Keys and certificates of kms_certificate services (the admin function); without it the type is refused. */
  kms?: KmsCertificates;
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

const typeOf = (c: ServiceRecord['config']) => c.credential_type ?? 'client_secret';

/**
 * Registers and manages services. Every write keeps the service and its secret together: a secret is never left
 * without its service, nor a service without its secret. Every write gives the service a new version, which is
 * part of every cache key: the service's cached tokens become unreachable at once, on every instance.
 */
export class ServiceAdministration {
  private readonly deps: ServiceAdministrationDependencies;
  private readonly now: () => number;
  private readonly newId: () => string;
  private readonly creation: ServiceCreation;
  private readonly credentials: ServiceCredentials;
  private readonly rotation?: KmsCertificateRotation;

  constructor(deps: ServiceAdministrationDependencies) {
    this.deps = deps;
    this.now = deps.now ?? Date.now;
    this.newId = deps.newId ?? randomUUID;
    this.credentials = new ServiceCredentials({
      ...deps,
      federationEnabled: deps.federationEnabled ?? false,
      now: this.now,
    });
    this.creation = new ServiceCreation({
      ...deps,
      credentials: this.credentials,
      now: this.now,
      newId: this.newId,
    });
    if (deps.kms) {
      this.rotation = new KmsCertificateRotation({
        ...deps,
        kms: deps.kms,
        creation: this.creation,
        now: this.now,
        newId: this.newId,
      });
    }
  }

  /**
   * Creates the services in a request body: one service object, or `{"resource": [...]}`, all or none. All are
   * validated before anything is written; if one fails to be written, or the request's deadline comes too close,
   * those written before it are removed again. Creates cut off earlier (Lambda timeout) are undone first.
   */
  async create(body: unknown, options: CallOptions = {}): Promise<CreateResult> {
    const { prepared, envelope } = await this.prepare(body, options);
    await this.creation.undoInterrupted(options);
    return this.createPrepared(prepared, envelope, options);
  }

  /** Validates a create body and checks its references; nothing is written. */
  private async prepare(
    body: unknown,
    options: CallOptions,
  ): Promise<{ prepared: PreparedService[]; envelope: boolean }> {
    const { items, envelope } = unwrap(body);
    const inputs = items.map((item, i) =>
      parseOrThrow(ServiceInputSchema, item, envelope ? `resource[${i}]` : ''),
    );
    const seen = new Set<string>();
    const prepared: PreparedService[] = [];
    for (const input of inputs) {
      if (seen.has(input.name)) throw new ValidationError(`name: "${input.name}" appears more than once`);
      seen.add(input.name);
      const split = splitInput(input);
      const config = await this.creation.checkKms(split.config, split.kmsKeyArn);
      const certificate = await this.creation.checkReferences(input.name, config, split.secret, options);
      prepared.push({ input, config, secret: split.secret, certificate, kmsKeyArn: split.kmsKeyArn });
    }
    return { prepared, envelope };
  }

  private async createPrepared(
    prepared: readonly PreparedService[],
    envelope: boolean,
    options: CallOptions,
  ): Promise<CreateResult> {
    const created = await this.creation.createAll(prepared, options);
    for (const record of created) {
      this.deps.logger.info('audit: service created', {
        serviceName: record.name,
        version: record.version,
        credentialType: record.config.credential_type ?? 'client_secret',
        secretManaged: record.secret?.managed ?? false,
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
  async update(
    name: string,
    body: unknown,
    ifMatch?: string,
    options: CallOptions = {},
  ): Promise<VersionedView> {
    const patch = parseOrThrow(ServicePatchSchema, body);
    if (patch.name !== undefined && patch.name !== name) {
      throw new ValidationError('name: a service cannot be renamed; create a new one and delete this one');
    }
    const current = await this.currentAt(name, ifMatch, options);

    const { active_certificate: activeThumbprint, kms_key_arn: keyArn, ...patchConfig } = patch.config ?? {};
    if (
      keyArn !== undefined &&
      (current.kms?.active.keyCreated !== false || keyArn !== current.kms.active.keyArn)
    ) {
      throw new ValidationError(
        `config.kms_key_arn: a service's key is chosen when it is created; POST /api/v2/system/service/${name}/certificate issues a certificate with a new key`,
        { context: { field: 'config.kms_key_arn' } },
      );
    }
    const base = toEditableInput(current);
    const mergedConfig: Record<string, unknown> = { ...(base.config as object), ...patchConfig };
    // null returns an optional field (authority_url, the authorization code fields) to its default.
    for (const [field, value] of Object.entries(mergedConfig)) if (value === null) delete mergedConfig[field];
    const { config: _ignored, ...patchTop } = patch;
    const merged = parseOrThrow(ServiceMergedSchema, { ...base, ...patchTop, config: mergedConfig });
    const { config, secret } = splitInput(merged);
    assertCredentialChange(typeOf(current.config), typeOf(config), merged.config);
    const certificate = await this.creation.checkReferences(name, config, secret, options);
    const activated =
      activeThumbprint === undefined ? undefined : KmsCertificateRotation.activate(current, activeThumbprint);

    const version = this.newId();
    // The credential the new version uses: what the write brings, else the current one if the type is unchanged.
    const keepSecret = typeOf(config) !== 'federated' ? current.secret : undefined;
    const nextSecret = secret ? await this.creation.storeSecret(name, version, secret, options) : keepSecret;
    const nextCertificate =
      typeOf(config) === 'certificate'
        ? (certificate ?? current.certificate)
        : typeOf(config) === 'kms_certificate'
          ? (activated?.certificate ?? current.certificate)
          : undefined;
    const next: ServiceRecord = {
      ...current,
      label: merged.label ?? current.label,
      description: merged.description ?? current.description,
      is_active: merged.is_active,
      config,
      secret: nextSecret,
      certificate: nextCertificate,
      kms: activated?.kms ?? current.kms,
      version,
      updated_at: new Date(this.now()).toISOString(),
    };
    try {
      await this.deps.registry.replace(next, current.version, options);
    } catch (error) {
      if (next.secret?.arn !== current.secret?.arn) await this.credentials.drop(next.secret, name, 'now');
      throw error;
    }
    // The old version's tokens are already unreachable (new version in the key); removing them is tidiness.
    await this.clearQuietly(name);
    if (next.secret?.arn !== current.secret?.arn) {
      await this.credentials.drop(current.secret, name, 'recoverable');
    }
    // The replaced key signed its last assertion before the write: from now on every instance uses the new one.
    if (activated?.retired) await this.deps.kms?.retire(activated.retired, name);

    const before = toServiceView(current);
    const after = toServiceView(next);
    const fields = changedFields(before, after);
    if (secret && 'clientSecret' in secret) fields.push('config.client_secret');
    if (secret && 'privateKey' in secret) fields.push('config.private_key');
    this.deps.logger.info('audit: service updated', { serviceName: name, version, fields });
    return { service: after, version };
  }

  /** Deletes a service, its cached tokens, and its managed secret (restorable for 7 days). */
  async delete(name: string, ifMatch?: string, options: CallOptions = {}): Promise<VersionedView> {
    const current = await this.currentAt(name, ifMatch, options);
    // The configuration goes first: from that moment no instance serves the service, whatever happens next.
    await this.deps.registry.delete(name, current.version, options);
    await this.clearQuietly(name);
    await this.credentials.drop(current.secret, name, 'recoverable');
    await this.deps.kms?.retireAll(current);
    this.deps.logger.info('audit: service deleted', { serviceName: name, version: current.version });
    return { service: toServiceView(current), version: current.version };
  }

  /** The service a write starts from: NotFoundError when it does not exist, 412 when `ifMatch` is stale. */
  private async currentAt(
    name: string,
    ifMatch: string | undefined,
    options: CallOptions,
  ): Promise<ServiceRecord> {
    const current = await this.deps.registry.get(name, options);
    if (!current) throw new NotFoundError(`service "${name}" does not exist`);
    if (ifMatch !== undefined && ifMatch !== current.version) {
      throw new PreconditionFailedError(
        `service "${name}" has changed since version ${ifMatch}; read it again`,
      );
    }
    return current;
  }

  private async clearQuietly(name: string): Promise<void> {
    try {
      await this.deps.cache.clear(name);
    } catch (error) {
      // Unreachable anyway (version or service gone); DynamoDB's TTL removes them within a token lifetime.
      this.deps.logger.warn('stale cached tokens not removed', { serviceName: name, error });
    }
  }

  /**
   * Makes a declared service (configuration as code) exist as declared: creates it when missing, updates it when
   * any field differs, and leaves it alone otherwise. A declared `client_secret` value cannot be compared with the
   * stored one without reading it, so declaring one always updates (rotates) the secret.
   */
  async declare(body: unknown, options: CallOptions = {}): Promise<'created' | 'updated' | 'unchanged'> {
    const input = parseOrThrow(ServiceInputSchema, body);
    const current = await this.deps.registry.get(input.name, options);
    if (!current) {
      // Not create(): the declaring function may not scan the table for interrupted creates.
      const { prepared } = await this.prepare(body, options);
      await this.createPrepared(prepared, false, options);
      return 'created';
    }
    const { config, secret, kmsKeyArn } = splitInput(input);
    const desired: ServiceView = {
      ...topFieldsOf(input),
      config: {
        ...config,
        ...(secret && 'clientSecretArn' in secret ? { client_secret_arn: secret.clientSecretArn } : {}),
        ...(secret && 'certificateSecretArn' in secret
          ? { certificate_secret_arn: secret.certificateSecretArn }
          : {}),
        ...(kmsKeyArn ? { kms_key_arn: kmsKeyArn } : {}),
      },
    };
    const currentView = toServiceView(current);
    // The broker's own certificates are not declared: compare the rest.
    if (config.credential_type === 'kms_certificate') {
      const { certificate, certificate_thumbprint_sha256, certificate_not_after } = currentView.config;
      Object.assign(desired.config, { certificate, certificate_thumbprint_sha256, certificate_not_after });
      for (const f of [
        'next_certificate',
        'next_certificate_thumbprint_sha256',
        'next_certificate_not_after',
      ] as const)
        if (currentView.config[f] !== undefined) desired.config[f] = currentView.config[f];
    }
    const unchanged =
      changedFields(currentView, desired).length === 0 && !(secret && 'clientSecret' in secret);
    if (unchanged) return 'unchanged';
    const { name: _name, ...patch } = body as Record<string, unknown>;
    const patchConfig = { ...(patch.config as Record<string, unknown>) };
    // Fields the declaration leaves out return to their defaults, as in a fresh create.
    for (const field of ['authority_url', 'user_scopes', 'redirect_uri', 'return_to_hosts', 'prompt']) {
      if (patchConfig[field] === undefined) patchConfig[field] = null;
    }
    await this.update(
      input.name,
      {
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
      },
      undefined,
      options,
    );
    return 'updated';
  }

  /** The active certificate (PEM) of a certificate or kms_certificate service; NotFoundError otherwise. */
  async certificate(name: string, options: CallOptions = {}): Promise<string> {
    const record = await this.deps.registry.get(name, options);
    if (!record) throw new NotFoundError(`service "${name}" does not exist`);
    if (!record.certificate) {
      throw new NotFoundError(
        `service "${name}" has no certificate (credential_type "${typeOf(record.config)}")`,
      );
    }
    return record.certificate.pem;
  }

  /** Issues the next certificate of a kms_certificate service, with a new key (KmsCertificateRotation.issueNext). */
  async issueNextCertificate(
    name: string,
    ifMatch?: string,
    options: CallOptions = {},
  ): Promise<IssuedCertificate> {
    if (!this.rotation) throw new ValidationError('certificates are issued only by the admin API');
    // Rotations (and creates) cut off earlier are undone first, as create() does.
    await this.creation.undoInterrupted(options);
    return this.rotation.issueNext(await this.currentAt(name, ifMatch, options), options);
  }

  /** Every service, without secrets. */
  async list(options: CallOptions = {}): Promise<ServiceView[]> {
    return (await this.deps.registry.list(options)).map(toServiceView);
  }

  /** One service, without its secret; NotFoundError when it does not exist. */
  async get(name: string, options: CallOptions = {}): Promise<VersionedView> {
    const record = await this.deps.registry.get(name, options);
    if (!record) throw new NotFoundError(`service "${name}" does not exist`);
    return { service: toServiceView(record), version: record.version };
  }
}
