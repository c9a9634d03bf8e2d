import { type AuthorityPolicy, tokenEndpointFor } from './authority';
import type { CallOptions } from './call-options';
import { type CredentialSources, credentialOf } from './credentials/service-credential';
import type { EntraTokenClient, IssuedToken } from './entra-token-client';
import { GrantNotEnabledError } from './errors';
import type { SecretCache } from './secret-cache';
import { allowsClientCredentials, type ServiceRecord } from './service-config';

/**
 * One token request, ready to send: the retry policy sends it with what is left of its budget, and the request's
 * signal (which aborts it when the request's own budget runs out).
 */
export type PreparedRequest = (timeoutMs: number, signal?: AbortSignal) => Promise<IssuedToken>;

/**
 * How tokens of one OAuth grant are obtained from Entra: whether a service may use the grant, and one request.
 * The flow (lib/client-credentials-flow.ts) caches, leases and retries around it; another grant is another
 * implementation of this port, not another branch in the flow.
 */
export interface TokenGrant {
  /** Throws (GrantNotEnabledError) when the service may not use this grant. */
  assertAllowed(service: ServiceRecord): void;
  /**
   * Everything a request needs before it is sent (endpoint check, credential). Errors here are not Entra's and
   * are not retried. `freshCredential` reads the credential from the store again (after invalid_client); the
   * read is bounded by the request's budget (`signal`).
   */
  prepare(
    service: ServiceRecord,
    scope: string,
    options: { freshCredential: boolean } & CallOptions,
  ): Promise<PreparedRequest>;
}

/** The one thing the grant needs of the Entra client (lib/entra-token-client.ts): a token request. */
export type TokenEndpointClient = Pick<EntraTokenClient, 'requestToken'>;

export interface ClientCredentialsGrantOptions {
  entra: TokenEndpointClient;
  authority: AuthorityPolicy;
  credentials: SecretCache;
  /** Where non-secret credentials (federated tokens) come from. */
  sources?: CredentialSources;
}

/** The OAuth 2.0 client credentials grant (RFC 6749 §4.4) against the service's Entra tenant. */
export class ClientCredentialsGrant implements TokenGrant {
  private readonly options: ClientCredentialsGrantOptions;

  constructor(options: ClientCredentialsGrantOptions) {
    this.options = options;
  }

  assertAllowed(service: ServiceRecord): void {
    if (allowsClientCredentials(service.config)) return;
    throw new GrantNotEnabledError(
      `service "${service.name}" does not allow the client credentials grant (grant_type is "${service.config.grant_type}" and is_client_credentials is false)`,
    );
  }

  async prepare(
    service: ServiceRecord,
    scope: string,
    options: { freshCredential: boolean } & CallOptions,
  ): Promise<PreparedRequest> {
    const tokenEndpoint = tokenEndpointFor(
      service.config.authority_url,
      service.config.tenant_id,
      service.config.cloud,
    );
    // Checked on every request: the allow-list may have shrunk since the service was created.
    this.options.authority.assertAllowed(tokenEndpoint);
    const credential = await credentialOf(service, this.options.credentials, this.options.sources ?? {}, {
      fresh: options.freshCredential,
      signal: options.signal,
    });
    return (timeoutMs, signal) =>
      this.options.entra.requestToken({
        tokenEndpoint,
        clientId: service.config.client_id,
        credential,
        scope,
        timeoutMs,
        signal,
      });
  }
}
