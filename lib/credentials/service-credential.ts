import { CredentialUnavailableError, StoreError } from '../errors';
import type { SecretCache } from '../secret-cache';
import type { ServiceRecord } from '../service-config';
import type { ClientCredential } from './credential';
import { federatedCredential, type WebIdentityTokenSource } from './federated';
import { kmsCertificateCredential } from './kms-certificate';
import type { SigningKeys } from './kms-signing-keys';

/**
 * What credentials other than stored secrets need, built by the runtime. Each is a loader, so the code behind it
 * (the STS client) loads only when a service of that type asks for a token.
 */
export interface CredentialSources {
  /** The broker's own web identity tokens (AWS STS); absent where federation is not set up. */
  webIdentity?: () => Promise<WebIdentityTokenSource>;
  /** KMS keys that sign for kms_certificate services (the function's own KMS client). */
  signingKeys?: SigningKeys;
}

/**
 * The credential a service authenticates with: its stored client secret or imported certificate (through the
 * secret cache), its active KMS certificate (signed by kms:Sign), or a federated web identity token.
 */
export async function credentialOf(
  service: ServiceRecord,
  secrets: SecretCache,
  sources: CredentialSources,
  options: { fresh: boolean; signal?: AbortSignal },
): Promise<ClientCredential> {
  if (service.config.credential_type === 'federated') {
    if (!sources.webIdentity) {
      throw new CredentialUnavailableError(
        `service "${service.name}" uses a federated credential, but this deployment cannot get web identity tokens (federation is not enabled in the stack)`,
      );
    }
    return federatedCredential({ source: sources.webIdentity, audience: service.config.federation_audience });
  }
  if (service.config.credential_type === 'kms_certificate') {
    if (!service.kms || !sources.signingKeys) {
      throw new CredentialUnavailableError(
        `service "${service.name}" uses a kms_certificate credential, but ${service.kms ? 'this function cannot sign with KMS' : 'it has no KMS key recorded'}`,
      );
    }
    const { active } = service.kms;
    return kmsCertificateCredential({
      keys: sources.signingKeys,
      certificate: {
        keyArn: active.keyArn,
        thumbprintSha256: active.certificate.thumbprintSha256,
        notAfter: active.certificate.notAfter,
      },
    });
  }
  if (!service.secret) throw new StoreError(`service "${service.name}" has no secret`);
  return secrets.credential(service.secret.arn, options);
}
