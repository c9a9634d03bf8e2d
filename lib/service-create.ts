import type { Logger } from '@aws-lambda-powertools/logger';
import { type AuthorityPolicy, tokenEndpointFor } from './authority';
import type { CallOptions } from './call-options';
import type { CreateJournal, PlannedService } from './create-journal';
import type { KmsSigningKey } from './credentials/kms-credential-config';
import { ConflictError, DeadlineExceededError, ValidationError } from './errors';
import { KmsCertificates } from './kms-certificates';
import type { SecretStore } from './secret-store';
import {
  type SecretInput,
  type SecretReference,
  type ServiceInput,
  type ServiceRecord,
  type StoredCertificate,
  topFieldsOf,
} from './service-config';
import { ServiceCredentials } from './service-credentials';
import type { ServiceRegistry } from './service-registry';

/**
 * Time a create must have left before it starts writing one more service: enough to write it (three calls) and,
 * should that fail, to undo every service of the request (in parallel), at normal AWS latency with a wide margin.
 */
export const CREATE_STEP_RESERVE_MS = 2000;

/**
 * How long an intent is kept after its request's deadline before another create undoes it: by then the
 * invocation has certainly ended (the handler answers before its Lambda timeout, which ends it).
 */
export const INTENT_GRACE_MS = 60_000;

/** Without a deadline (no Lambda context), an intent is kept for Lambda's longest possible invocation. */
export const INTENT_DEFAULT_WINDOW_MS = 15 * 60_000;

/** What ServiceCreation needs, from ServiceAdministration. */
export interface ServiceCreationDependencies {
  registry: ServiceRegistry;
  secrets: SecretStore;
  authority: AuthorityPolicy;
  /** Checks, stores and drops the credential of each service. */
  credentials: ServiceCredentials;
  logger: Logger;
  /** Without a journal, a create cut off part way is not undone later (lib-level tests only). */
  journal?: CreateJournal;
  /** Keys and certificates of kms_certificate services; without it the type is refused (400). */
  kms?: KmsCertificates;
  now: () => number;
  newId: () => string;
}

/** A validated service, ready to be written. */
export interface PreparedService {
  input: ServiceInput;
  config: ServiceRecord['config'];
  /** Undefined for a federated service: it has no secret. */
  secret: SecretInput;
  /** An imported certificate's public facts. */
  certificate?: StoredCertificate;
  /** kms_certificate: the key the administrator brought (checked); without it the broker creates one. */
  kmsKeyArn?: string;
}

/**
 * Writes services and their secrets all-or-nothing: every service of a request is stored, or none is. Within the
 * invocation a failure undoes what was written; a create that would not finish within the request's deadline
 * stops in time and undoes itself; and a create cut off anyway (Lambda timeout, crash) leaves a journal intent
 * that the next create undoes once the invocation has certainly ended.
 */
export class ServiceCreation {
  constructor(private readonly deps: ServiceCreationDependencies) {}

  /**
   * Checks what cannot be checked by the schema alone: the authority host, and the credential (see
   * ServiceCredentials.check). Returns an imported certificate's public facts.
   */
  async checkReferences(
    name: string,
    config: ServiceRecord['config'],
    secret: SecretInput,
    options?: CallOptions,
  ): Promise<StoredCertificate | undefined> {
    this.deps.authority.assertAllowed(tokenEndpointFor(config.authority_url, config.tenant_id, config.cloud));
    return this.deps.credentials.check(name, config, secret, options);
  }

  /**
   * Checks what a kms_certificate service needs: that this deployment can issue certificates, and that a brought
   * key (`kms_key_arn`) is an enabled RSA SIGN_VERIFY key. Returns the config with the key's spec recorded.
   */
  async checkKms(config: ServiceRecord['config'], kmsKeyArn?: string): Promise<ServiceRecord['config']> {
    if (config.credential_type !== 'kms_certificate') return config;
    if (!this.deps.kms) {
      throw new ValidationError(
        'config.credential_type: "kms_certificate" is not available in this function (only the admin API issues certificates)',
        { context: { field: 'config.credential_type' } },
      );
    }
    if (kmsKeyArn === undefined) return config;
    return { ...config, key_spec: await this.deps.kms.checkKey(kmsKeyArn, config.key_spec) };
  }

  /** Stores the secret a write brings (see ServiceCredentials.store). */
  storeSecret(
    name: string,
    version: string,
    secret: NonNullable<SecretInput>,
    options?: CallOptions,
  ): Promise<SecretReference> {
    return this.deps.credentials.store(name, version, secret, options);
  }

  /** When an intent written now may be undone by another create: after its request has certainly ended. */
  private intentExpiry(options: CallOptions): number {
    return (options.deadline ?? this.deps.now() + INTENT_DEFAULT_WINDOW_MS) + INTENT_GRACE_MS;
  }

  /** Refuses to start writing one more service when the request's deadline is too close to finish or undo it. */
  private assertTimeLeft(options: CallOptions): void {
    if (options.deadline === undefined || this.deps.now() + CREATE_STEP_RESERVE_MS <= options.deadline)
      return;
    throw new DeadlineExceededError(
      'the request ran out of time before every service was created, so none was; send fewer services per request',
    );
  }

  /**
   * Writes the prepared services, all or none. The journal intent is written before the first write and ended
   * after the last: between the two, a cut-off invocation leaves it for {@link undoInterrupted}.
   */
  async createAll(prepared: readonly PreparedService[], options: CallOptions = {}): Promise<ServiceRecord[]> {
    const planned = prepared.map((p) => ({ ...p, version: this.deps.newId() }));
    const services: PlannedService[] = planned.map((p) => ({
      name: p.input.name,
      version: p.version,
      managedSecret: ServiceCredentials.createsManagedSecret(p.secret),
    }));
    const intentId = this.deps.newId();
    const expiresAt = this.intentExpiry(options);
    await this.deps.journal?.begin({ id: intentId, services, expiresAt }, options);

    const created: ServiceRecord[] = [];
    let attempted = 0;
    try {
      for (const [index, { input, config, secret, certificate, version, kmsKeyArn }] of planned.entries()) {
        this.assertTimeLeft(options);
        attempted++;
        // Cheap early answer; the conditional write below is what really guards the name.
        if (await this.deps.registry.get(input.name, options)) {
          throw new ConflictError(`a service named "${input.name}" already exists`);
        }
        const kms = await this.provisionKms(input.name, config, kmsKeyArn, async (keyArn) => {
          // Known from here on: an undo (now, or after a cut-off) schedules its deletion unless it is in use.
          (services[index] as PlannedService).kmsKeyArn = keyArn;
          await this.deps.journal?.noteKey({ id: intentId, services, expiresAt }, options);
        });
        const timestamp = new Date(this.deps.now()).toISOString();
        const record: ServiceRecord = {
          ...topFieldsOf(input),
          config,
          // Federated services have no secret at all.
          ...(secret ? { secret: await this.storeSecret(input.name, version, secret, options) } : {}),
          ...(certificate ? { certificate } : {}),
          ...(kms ? { certificate: kms.certificate, kms: { active: kms } } : {}),
          version,
          created_at: timestamp,
          updated_at: timestamp,
        };
        await this.deps.registry.create(record, options);
        created.push(record);
      }
      await this.deps.journal?.end(intentId, options);
    } catch (error) {
      // Without the request's signal: it may be what failed. Each call is still bounded by the client's limits.
      // If anything could not be removed, the intent stays, and a later create finishes the job.
      if (await this.undo(services.slice(0, attempted))) {
        await this.deps.journal?.end(intentId).catch((cause: unknown) => {
          this.deps.logger.warn('create intent not removed; a later create removes it', {
            intentId,
            error: cause,
          });
        });
      }
      throw error;
    }
    return created;
  }

  /** The key and certificate of a kms_certificate service (KmsCertificates.provision); undefined for others. */
  private async provisionKms(
    name: string,
    config: ServiceRecord['config'],
    keyArn: string | undefined,
    onKeyCreated: (keyArn: string) => Promise<void>,
  ) {
    if (config.credential_type !== 'kms_certificate' || !this.deps.kms) return undefined;
    return this.deps.kms.provision(
      name,
      { ...KmsCertificates.rotationRequest(config), keyArn },
      onKeyCreated,
    );
  }

  /**
   * Undoes the creates whose invocation was cut off before it finished (their intent expired without being
   * ended): removes every service and managed secret they planned, as far as it was written. Best effort: a
   * failure is logged and left for the next create.
   */
  async undoInterrupted(options: CallOptions = {}): Promise<void> {
    if (!this.deps.journal) return;
    try {
      for (const intent of await this.deps.journal.expired(this.deps.now(), options)) {
        if (!(await this.undo(intent.services))) continue;
        await this.deps.journal.end(intent.id, options);
        this.deps.logger.warn('audit: interrupted create undone', {
          intentId: intent.id,
          serviceNames: intent.services.map((s) => s.name),
        });
      }
    } catch (error) {
      this.deps.logger.warn('interrupted creates not undone yet; the next create tries again', { error });
    }
  }

  /** Removes what the planned services left behind, in parallel; idempotent. True when nothing is left. */
  private async undo(services: readonly PlannedService[]): Promise<boolean> {
    return (await Promise.all(services.map((s) => this.undoOne(s)))).every(Boolean);
  }

  /**
   * Issues the next certificate of a kms_certificate service (a new key) under a journal intent, and has `write`
   * store the record that names it. Should the invocation be cut off after CreateKey and before the write, the
   * intent (`keyOnly`: the service itself is never touched) has a later undo retire the key unless a record uses
   * it. Should `write` fail, the key is retired at once.
   */
  async rotateKey(
    name: string,
    config: ServiceRecord['config'],
    write: (key: KmsSigningKey) => Promise<void>,
    options: CallOptions = {},
  ): Promise<KmsSigningKey> {
    const kms = this.deps.kms as KmsCertificates;
    const planned: PlannedService = { name, version: 'rotation', managedSecret: false, keyOnly: true };
    const expiresAt = this.intentExpiry(options);
    const intent = { id: this.deps.newId(), services: [planned], expiresAt };
    await this.deps.journal?.begin(intent, options);
    // A failure here has retired the key already (provision); the intent stays for a later undo to confirm.
    const key = await kms.provision(name, KmsCertificates.rotationRequest(config), async (keyArn) => {
      planned.kmsKeyArn = keyArn;
      await this.deps.journal?.noteKey(intent, options);
    });
    try {
      await write(key);
    } catch (error) {
      await kms.retire(key, name);
      throw error;
    }
    await this.deps.journal?.end(intent.id).catch((error: unknown) => {
      // The key is in use: a later undo finds it so and only removes the intent.
      this.deps.logger.warn('rotation intent not removed; a later create removes it', {
        intentId: intent.id,
        error,
      });
    });
    return key;
  }

  /** A rotation's key: retired unless the service's record uses it (the record itself is never touched). */
  private async undoKeyOnly(planned: PlannedService): Promise<boolean> {
    if (planned.kmsKeyArn === undefined) return true;
    const current = await this.currentForUndo(planned, 'key', { keyArn: planned.kmsKeyArn });
    return current !== false && this.retireKeyUnlessUsed(planned, current);
  }

  /**
   * The service's record as it is now, for an undo to tell whether the key or secret it would remove is in use;
   * false (logged, and what would be removed is kept for a later undo) when it cannot be read.
   */
  private async currentForUndo(
    planned: PlannedService,
    kept: 'key' | 'secret',
    context: Record<string, unknown>,
  ): Promise<ServiceRecord | undefined | false> {
    try {
      return await this.deps.registry.get(planned.name);
    } catch (error) {
      this.deps.logger.error(`rollback: ${kept} kept, its service could not be read`, {
        serviceName: planned.name,
        ...context,
        error,
      });
      return false;
    }
  }

  /** Retires the planned service's new key unless `current` uses it (active or pending); true when nothing is left. */
  private async retireKeyUnlessUsed(
    planned: PlannedService,
    current: ServiceRecord | undefined,
  ): Promise<boolean> {
    const keyArn = planned.kmsKeyArn;
    if (
      keyArn === undefined ||
      [current?.kms?.active, current?.kms?.next].some((k) => k?.keyArn === keyArn)
    ) {
      return true;
    }
    return (await this.deps.kms?.retire({ keyArn, keyCreated: true }, planned.name)) !== false;
  }

  private async undoOne(planned: PlannedService): Promise<boolean> {
    if (planned.keyOnly) return this.undoKeyOnly(planned);
    const secretName = this.deps.credentials.managedSecretName(planned.name, planned.version);
    // Undefined once our record is gone: then nothing uses the planned key or secret.
    let current: ServiceRecord | undefined;
    try {
      // Only our record (this exact version) goes: the write may have been applied even if it reported failure.
      await this.deps.registry.delete(planned.name, planned.version);
    } catch (error) {
      if (!(error instanceof ConflictError)) {
        this.deps.logger.error('rollback: service not removed', { serviceName: planned.name, error });
        return false;
      }
      // Not at our version: never written, someone else's, or changed since. Keep what it uses.
      const read = await this.currentForUndo(planned, 'secret', { secretName });
      if (read === false) return false;
      current = read;
    }
    if (!(await this.retireKeyUnlessUsed(planned, current))) return false;
    const secretInUse = current?.secret?.arn.includes(`:secret:${secretName}-`) === true;
    if (!planned.managedSecret || secretInUse) return true;
    try {
      // By name: the create may have been cut off before CreateSecret's answer (and ARN) arrived.
      await this.deps.secrets.delete(secretName);
      return true;
    } catch (error) {
      this.deps.logger.error('secret not removed yet', { serviceName: planned.name, secretName, error });
      return false;
    }
  }
}
