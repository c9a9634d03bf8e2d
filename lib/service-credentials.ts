import type { Logger } from '@aws-lambda-powertools/logger';
import type { CallOptions } from './call-options';
import { checkImportedCertificate } from './credentials/certificate';
import { type StoredCredential, storedCertificate, storedClientSecret } from './credentials/credential';
import { DEFAULT_FEDERATION_AUDIENCE } from './credentials/federated';
import { ValidationError } from './errors';
import { MANAGED_SECRET_TAG, type SecretReferencePolicy } from './secret-reference';
import type { SecretStore } from './secret-store';
import type { SecretInput, SecretReference, ServiceConfig, StoredCertificate } from './service-config';

/** Days a deleted service's secret can still be restored (Secrets Manager's minimum is 7). */
export const SECRET_RECOVERY_WINDOW_DAYS = 7;

export interface ServiceCredentialsOptions {
  secrets: SecretStore;
  secretReferences: SecretReferencePolicy;
  logger: Logger;
  /** Secrets Manager name prefix, ending in `/`. */
  secretPrefix: string;
  /** Whether this deployment can issue web identity tokens (its roles may call sts:GetWebIdentityToken). */
  federationEnabled: boolean;
  /** Audiences besides {@link DEFAULT_FEDERATION_AUDIENCE} a federated service may name. */
  federationAudiences?: readonly string[];
  now: () => number;
}

/**
 * The credential side of service administration: checks what a write brings (a secret reference, an imported
 * certificate and key, a federated credential), stores it in Secrets Manager, and deletes what the broker
 * created. ServiceAdministration and ServiceCreation keep the service and its credential together around these.
 */
export class ServiceCredentials {
  constructor(private readonly options: ServiceCredentialsOptions) {}

  /** Name of the managed secret of a service version (the tag and this name mark it as the service's own). */
  managedSecretName(name: string, version: string): string {
    return `${this.options.secretPrefix}${name}/${version}`;
  }

  /**
   * Checks the credential a write brings: a secret reference must be the complete ARN of an existing secret the
   * service may use (never another service's managed secret); an imported certificate must be valid and match
   * its key; federation must be set up. Returns an imported certificate's public facts. Error messages name the
   * field and the rule, never a secret or a key.
   */
  async check(
    name: string,
    config: ServiceConfig,
    secret: SecretInput,
    options?: CallOptions,
  ): Promise<StoredCertificate | undefined> {
    if (config.credential_type === 'federated' && !this.options.federationEnabled) {
      throw new ValidationError(
        'config.credential_type: "federated" is not available in this deployment: its roles cannot call sts:GetWebIdentityToken (enable federation in the stack, see README)',
        { context: { field: 'config.credential_type' } },
      );
    }
    if (config.credential_type === 'federated' && config.federation_audience !== undefined) {
      this.assertAudienceAllowed(config.federation_audience);
    }
    if (secret && 'clientSecretArn' in secret) {
      const arn = secret.clientSecretArn;
      this.options.secretReferences.assertAllowed(arn, name);
      this.options.secretReferences.assertUsable(
        arn,
        await this.options.secrets.describe(arn, options),
        name,
      );
    }
    if (secret && 'certificateSecretArn' in secret) {
      return this.checkCertificateSecret(name, secret.certificateSecretArn, options);
    }
    if (secret && 'certificate' in secret) {
      return this.certificateOf(secret.certificate, secret.privateKey);
    }
    return undefined;
  }

  /**
   * The broker's roles may request web identity tokens for Entra's audience and the stack's configured ones only
   * (an IAM condition): any other audience would fail at every token request, so it is refused at the write.
   */
  private assertAudienceAllowed(audience: string): void {
    const allowed = [DEFAULT_FEDERATION_AUDIENCE, ...(this.options.federationAudiences ?? [])];
    if (allowed.includes(audience)) return;
    throw new ValidationError(
      `config.federation_audience: "${audience}" is not an audience this deployment may request web identity tokens for (${allowed.join(', ')}); add it to the stack's federation.audiences`,
      { context: { field: 'config.federation_audience' } },
    );
  }

  /** Checks an imported certificate and key as creation requires; returns the certificate's public facts. */
  private certificateOf(certificate: string, privateKey: string, field?: string): StoredCertificate {
    const facts = checkImportedCertificate(certificate, privateKey, this.options.now(), field);
    return { pem: certificate.trim(), thumbprintSha256: facts.thumbprintSha256, notAfter: facts.notAfter };
  }

  /**
   * `certificate_secret_arn`: the same rules as `client_secret_arn`, and the secret must hold the broker's JSON
   * document with a certificate and its key that pass the same checks as imported ones. Reading it here (the only
   * secret value the admin function reads: referenced ones, never the broker's own) is what lets a mismatched or
   * expired certificate be refused at creation instead of at the first token request.
   */
  private async checkCertificateSecret(
    name: string,
    arn: string,
    options?: CallOptions,
  ): Promise<StoredCertificate> {
    const field = 'config.certificate_secret_arn';
    this.options.secretReferences.assertAllowed(arn, name, field);
    this.options.secretReferences.assertUsable(
      arn,
      await this.options.secrets.describe(arn, options),
      name,
      field,
    );
    let document: StoredCredential | undefined;
    try {
      document = JSON.parse(await this.options.secrets.read(arn, options)) as StoredCredential;
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error;
    }
    if (typeof document?.certificate !== 'string' || typeof document.private_key !== 'string') {
      throw new ValidationError(
        `${field}: the secret must hold JSON {"certificate": "<PEM>", "private_key": "<PEM PKCS#8>"}`,
        { context: { field } },
      );
    }
    return this.certificateOf(document.certificate, document.private_key, field);
  }

  /** Whether storing this input creates a managed secret (a value or a certificate, not a reference). */
  static createsManagedSecret(secret: SecretInput): boolean {
    return secret !== undefined && !('clientSecretArn' in secret) && !('certificateSecretArn' in secret);
  }

  /** Stores the secret a write brings: a new managed secret for a value or a certificate, a reference for an ARN. */
  async store(
    name: string,
    version: string,
    secret: NonNullable<SecretInput>,
    options?: CallOptions,
  ): Promise<SecretReference> {
    if ('clientSecretArn' in secret) return { arn: secret.clientSecretArn, managed: false };
    if ('certificateSecretArn' in secret) return { arn: secret.certificateSecretArn, managed: false };
    // A fresh secret per version: a write that fails can drop it without touching the secret in use, and a
    // deleted service's secret keeps its name during its recovery window.
    const value =
      'certificate' in secret
        ? storedCertificate(secret.certificate, secret.privateKey)
        : storedClientSecret(secret.clientSecret);
    const arn = await this.options.secrets.create(
      this.managedSecretName(name, version),
      value,
      // The tag marks it as this service's own: no other service may reference it (SecretReferencePolicy).
      { [MANAGED_SECRET_TAG]: name },
      options,
    );
    return { arn, managed: true };
  }

  /** Deletes a managed secret (never one the administrator brought); failures are logged with the ARN. */
  async drop(
    secret: SecretReference | undefined,
    service: string,
    mode: 'now' | 'recoverable',
  ): Promise<void> {
    if (!secret?.managed) return;
    try {
      await this.options.secrets.delete(
        secret.arn,
        mode === 'recoverable' ? { recoveryWindowDays: SECRET_RECOVERY_WINDOW_DAYS } : undefined,
      );
    } catch (error) {
      // Logged with the ARN so an operator can remove it; the secret is tagged with its service name.
      this.options.logger.error('orphan secret left behind', {
        serviceName: service,
        secretArn: secret.arn,
        error,
      });
    }
  }
}
