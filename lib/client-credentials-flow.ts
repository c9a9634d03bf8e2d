import type { Logger } from '@aws-lambda-powertools/logger';
import { type AuthorityPolicy, tokenEndpointFor } from './authority';
import { credentialFromSecret } from './credentials/credential';
import type { EntraTokenClient } from './entra-token-client';
import { GrantNotEnabledError, NotFoundError, ServiceInactiveError, ValidationError } from './errors';
import type { SecretStore } from './secret-store';
import { allowsClientCredentials, type ServiceRecord, scopesOf } from './service-config';
import type { ServiceRegistry } from './service-registry';
import type { CachedToken, CacheKey, TokenCache } from './token-cache';

/** The body of a successful token response (DreamFactory's shape, plus `expires_at`). */
export interface TokenResponseBody {
  access_token: string;
  token_type: 'Bearer';
  /** Whole seconds the token is still valid at the time of the response (counts down on cache hits). */
  expires_in: number;
  expires_at: string;
  acquired_at: string;
  scope: string;
}

/** How a token request was served, for logs and metrics. */
export type CacheOutcome = 'hit' | 'miss' | 'refresh';

export interface TokenResult {
  body: TokenResponseBody;
  cache: CacheOutcome;
}

export interface ClientCredentialsFlowDependencies {
  registry: ServiceRegistry;
  cache: TokenCache;
  secrets: SecretStore;
  entra: EntraTokenClient;
  authority: AuthorityPolicy;
  logger: Logger;
  now?: () => number;
}

export interface GetTokenOptions {
  /** One of the service's scopes; the service's first scope when omitted. */
  scope?: string;
  /** Skip the cache and ask Entra for a new token (POST). */
  forceRefresh?: boolean;
}

/** ISO-8601 UTC without milliseconds, as DreamFactory prints times. */
export function isoSeconds(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * DreamFactory's client credentials flow on AWS: serve a service's token from the cache while it has more than
 * 60 s of validity left, otherwise get one from Entra with the service's secret and cache it.
 */
export class ClientCredentialsFlow {
  private readonly deps: ClientCredentialsFlowDependencies;
  private readonly now: () => number;

  constructor(deps: ClientCredentialsFlowDependencies) {
    this.deps = deps;
    this.now = deps.now ?? Date.now;
  }

  /** Looks the service up and checks that it may use this flow; NotFound, Inactive or GrantNotEnabled otherwise. */
  private async usableService(name: string): Promise<ServiceRecord> {
    const service = await this.deps.registry.get(name);
    if (!service) throw new NotFoundError(`service "${name}" does not exist`);
    if (!service.is_active) throw new ServiceInactiveError(`service "${name}" is not active`);
    if (!allowsClientCredentials(service.config)) {
      throw new GrantNotEnabledError(
        `service "${name}" does not allow the client credentials grant (grant_type is "${service.config.grant_type}" and is_client_credentials is false)`,
      );
    }
    return service;
  }

  /** Returns a token for the service: from the cache (GET) or freshly from Entra (forced, or nothing valid cached). */
  async getToken(name: string, options: GetTokenOptions = {}): Promise<TokenResult> {
    const service = await this.usableService(name);
    const scopes = scopesOf(service.config);
    const scope = options.scope ?? (scopes[0] as string);
    if (!scopes.includes(scope)) {
      throw new ValidationError(`scope: "${scope}" is not one of the scopes of service "${name}"`, {
        context: { field: 'scope', allowed: scopes },
      });
    }
    const key: CacheKey = { service: name, version: service.version, scope };

    if (!options.forceRefresh) {
      const cached = await this.deps.cache.get(key);
      if (cached) return { body: this.responseBody(cached), cache: 'hit' };
    }

    const token = await this.fetchToken(service, scope);
    try {
      await this.deps.cache.put(key, token);
    } catch (error) {
      // The caller still gets its valid token; the next request simply asks Entra again.
      this.deps.logger.warn('token not cached', { serviceName: name, scope, error });
    }
    return { body: this.responseBody(token), cache: options.forceRefresh ? 'refresh' : 'miss' };
  }

  /** Removes every cached token of the service. The service must exist (404 otherwise). */
  async clearTokens(name: string): Promise<number> {
    const service = await this.deps.registry.get(name);
    if (!service) throw new NotFoundError(`service "${name}" does not exist`);
    return this.deps.cache.clear(name);
  }

  private async fetchToken(service: ServiceRecord, scope: string): Promise<CachedToken> {
    const tokenEndpoint = tokenEndpointFor(service.config.authority_url, service.config.tenant_id);
    // Checked again here: the allow-list may have shrunk since the service was created.
    this.deps.authority.assertAllowed(tokenEndpoint);
    const credential = credentialFromSecret(await this.deps.secrets.read(service.secret.arn));
    const issued = await this.deps.entra.requestToken({
      tokenEndpoint,
      clientId: service.config.client_id,
      credential,
      scope,
    });
    return {
      accessToken: issued.accessToken,
      scope,
      acquiredAt: issued.acquiredAt,
      expiresAt: issued.expiresAt,
    };
  }

  private responseBody(token: CachedToken): TokenResponseBody {
    return {
      access_token: token.accessToken,
      token_type: 'Bearer',
      expires_in: Math.max(0, Math.floor((token.expiresAt - this.now()) / 1000)),
      expires_at: isoSeconds(token.expiresAt),
      acquired_at: isoSeconds(token.acquiredAt),
      scope: token.scope,
    };
  }
}
