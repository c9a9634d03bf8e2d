import { CredentialUnavailableError, StoreError } from '../errors';
import type { SecretCache } from '../secret-cache';
import type { ServiceRecord } from '../service-config';
import type { ClientCredential } from './credential';
import { federatedCredential, type WebIdentityTokenSource } from './federated';

/**
 * What credentials other than stored secrets need, built by the runtime. Each is a loader, so the code behind it
 * (the STS client) loads only when a service of that type asks for a token.
 */
export interface CredentialSources {
  /** The broker's own web identity tokens (AWS STS); absent where federation is not set up. */
  webIdentity?: () => Promise<WebIdentityTokenSource>;
}

/**
 * The credential a service authenticates with: its stored client secret or imported certificate (through the
 * secret cache), or a federated web identity token.
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
  if (!service.secret) throw new StoreError(`service "${service.name}" has no secret`);
  return secrets.credential(service.secret.arn, options);
}
