import { randomUUID } from 'node:crypto';
import type { Logger } from '@aws-lambda-powertools/logger';
import * as oauth from 'oauth4webapi';
import { type AuthorityPolicy, tokenEndpointFor } from '../authority';
import { type CredentialSources, credentialOf } from '../credentials/service-credential';
import {
  ConsentFailedError,
  GrantNotEnabledError,
  NotFoundError,
  ServiceInactiveError,
  ValidationError,
} from '../errors';
import type { SecretCache } from '../secret-cache';
import type { ServiceRecord } from '../service-config';
import type { ServiceRegistry } from '../service-registry';
import type { DynamoDbConsentStateStore } from './consent-states';
import {
  allowsAuthorizationCode,
  type DelegatedConfig,
  isLoopbackHost,
  redirectUriOf,
  userScopesOf,
} from './delegated-config';
import type { DelegatedClientContext, EntraDelegatedClient } from './entra-delegated-client';
import type { UserSecretSealer } from './sealer';
import type { DynamoDbUserGrantStore, UserGrant } from './user-grants';

/** How long a consent may take, from the authorization_url to the callback. */
export const STATE_TTL_MS = 10 * 60_000;

export interface ConsentFlowDependencies {
  registry: ServiceRegistry;
  states: DynamoDbConsentStateStore;
  grants: DynamoDbUserGrantStore;
  sealer: UserSecretSealer;
  entra: EntraDelegatedClient;
  authority: AuthorityPolicy;
  credentials: SecretCache;
  /** Credentials other than stored secrets: the KMS keys of kms_certificate services (none: stored secrets only). */
  credentialSources?: CredentialSources;
  logger: Logger;
  now?: () => number;
}

/** Who asks for a consent and where the broker's API lives (for the default redirect URI). */
export interface ConsentRequestContext {
  caller: string;
  /** e.g. `https://abc.execute-api.eu-west-1.amazonaws.com/prod` or `http://127.0.0.1:3000`. */
  apiBaseUrl: string;
}

/** A consent to send the user to. */
export interface ConsentStart {
  authorizationUrl: string;
  /** Epoch milliseconds. */
  stateExpiresAt: number;
}

/** A finished consent: the stored grant and where to send the browser. */
export interface ConsentResult {
  grant: UserGrant;
  returnTo?: string;
}

/** The callback's query parameters, as the browser brought them. */
export interface CallbackParameters {
  code?: string;
  state?: string;
  error?: string;
  error_description?: string;
}

type ServiceWithDelegation = ServiceRecord & { config: ServiceRecord['config'] & DelegatedConfig };

/**
 * The authorization code flow's consent: {@link start} builds the authorize URL (PKCE S256, single-use state bound
 * to service, user_key and caller, nonce) and {@link complete} is the callback that consumes the state, redeems the
 * code, validates the id_token and stores the sealed refresh token.
 */
export class ConsentFlow {
  private readonly deps: ConsentFlowDependencies;
  private readonly now: () => number;

  constructor(deps: ConsentFlowDependencies) {
    this.deps = deps;
    this.now = deps.now ?? Date.now;
  }

  /** The service, if it exists, is active and serves the authorization code flow. */
  async usableService(name: string): Promise<ServiceWithDelegation> {
    const service = await this.deps.registry.get(name);
    if (!service) throw new NotFoundError(`service "${name}" does not exist`);
    if (!service.is_active) throw new ServiceInactiveError(`service "${name}" is not active`);
    if (!allowsAuthorizationCode(service.config)) {
      throw new GrantNotEnabledError(
        `service "${name}" does not serve the authorization code flow (its grant_type is "${service.config.grant_type}")`,
      );
    }
    return service as ServiceWithDelegation;
  }

  /** The Entra client of the flow (the user token flow redeems refresh tokens with it). */
  get entraClient(): EntraDelegatedClient {
    return this.deps.entra;
  }

  /**
   * Where the service's requests go, with its credential (read through the secret cache; `fresh` reads it from
   * the store again, after Entra refused it).
   */
  async clientContext(
    service: ServiceRecord,
    options: { fresh?: boolean } = {},
  ): Promise<DelegatedClientContext> {
    const tokenEndpoint = tokenEndpointFor(
      service.config.authority_url,
      service.config.tenant_id,
      service.config.cloud,
    );
    this.deps.authority.assertAllowed(tokenEndpoint);
    return {
      tokenEndpoint,
      clientId: service.config.client_id,
      // Client secrets, imported certificates and KMS-held keys. Federated services are not served here: the
      // delegated function's role is not the subject their federated credential trusts (see README).
      credential: await credentialOf(service, this.deps.credentials, this.deps.credentialSources ?? {}, {
        fresh: options.fresh ?? false,
      }),
    };
  }

  /** Starts a consent for `userKey`; the caller sends the user's browser to the returned URL. */
  async start(
    name: string,
    userKey: string,
    request: ConsentRequestContext,
    options: { returnTo?: string; loginHint?: string } = {},
  ): Promise<ConsentStart> {
    const service = await this.usableService(name);
    if (options.returnTo !== undefined) this.assertReturnToAllowed(service, options.returnTo);
    const tokenEndpoint = tokenEndpointFor(service.config.authority_url, service.config.tenant_id);
    this.deps.authority.assertAllowed(tokenEndpoint);
    const authorize = await this.deps.entra.authorizationEndpoint(tokenEndpoint);

    // oauth4webapi's generators: 32 random bytes each (256 bits), base64url.
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const verifier = oauth.generateRandomCodeVerifier();
    const redirectUri = redirectUriOf(service.config, request.apiBaseUrl, name);
    const createdAt = this.now();
    const expiresAt = createdAt + STATE_TTL_MS;
    await this.deps.states.put(state, {
      service: name,
      userKey,
      caller: request.caller,
      verifier: await this.deps.sealer.seal(verifier, {
        purpose: 'token-broker:pkce-verifier',
        service: name,
        user_key: userKey,
      }),
      nonce,
      redirectUri,
      ...(options.returnTo !== undefined ? { returnTo: options.returnTo } : {}),
      createdAt,
      expiresAt,
    });

    const url = new URL(authorize);
    const params: Record<string, string> = {
      client_id: service.config.client_id,
      response_type: 'code',
      redirect_uri: redirectUri,
      response_mode: 'query',
      scope: userScopesOf(service.config).join(' '),
      state,
      nonce,
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    };
    if (service.config.prompt !== undefined) params.prompt = service.config.prompt;
    if (options.loginHint !== undefined) params.login_hint = options.loginHint;
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    return { authorizationUrl: url.href, stateExpiresAt: expiresAt };
  }

  private assertReturnToAllowed(service: ServiceWithDelegation, returnTo: string): void {
    let url: URL | undefined;
    try {
      url = new URL(returnTo);
    } catch {
      url = undefined;
    }
    const schemeOk =
      url?.protocol === 'https:' || (url?.protocol === 'http:' && isLoopbackHost(url.hostname));
    if (!url || !schemeOk || url.username || url.password) {
      throw new ValidationError(
        'return_to: must be an absolute https URL (plain http only for loopback hosts)',
        {
          context: { field: 'return_to' },
        },
      );
    }
    const allowed = service.config.return_to_hosts ?? [];
    if (!allowed.includes(url.host.toLowerCase()) && !allowed.includes(url.hostname.toLowerCase())) {
      throw new ValidationError(`return_to: host "${url.host}" is not in the service's return_to_hosts`, {
        context: { field: 'return_to', allowed },
      });
    }
  }

  /**
   * The callback: consumes the state (once), then redeems the code and stores the user's grant. Every failure is a
   * ConsentFailedError whose reason the page explains; nothing the browser brought is echoed back.
   */
  async complete(name: string, params: CallbackParameters): Promise<ConsentResult> {
    if (!params.state) {
      throw new ConsentFailedError('state_missing', 'the sign-in response has no state parameter');
    }
    // Consumed before anything else, also when Entra reports an error: a state serves exactly one callback.
    const consumed = await this.deps.states.consume(params.state);
    if (!consumed.found) {
      throw new ConsentFailedError('state_unknown', 'this sign-in link was already used or is unknown');
    }
    const state = consumed.state;
    if (state.service !== name) {
      throw new ConsentFailedError('state_other_service', 'this sign-in was started for another service');
    }
    if (this.now() >= state.expiresAt) {
      throw new ConsentFailedError(
        'state_expired',
        'this sign-in link has expired (links are valid for 10 minutes)',
      );
    }
    if (params.error !== undefined) {
      const denied = params.error === 'access_denied';
      throw new ConsentFailedError(
        denied ? 'authorization_denied' : 'authorization_error',
        denied
          ? 'the consent was refused'
          : `the identity provider reported an error (${params.error.replace(/[^a-z_]/gi, '').slice(0, 64)})`,
      );
    }
    if (!params.code) throw new ConsentFailedError('redemption_failed', 'the sign-in response has no code');

    const service = await this.usableService(name).catch((error: unknown) => {
      throw new ConsentFailedError('redemption_failed', 'the service can no longer serve this sign-in', {
        cause: error,
      });
    });
    const context = await this.clientContext(service);
    const verifier = await this.deps.sealer.open(state.verifier, {
      purpose: 'token-broker:pkce-verifier',
      service: name,
      user_key: state.userKey,
    });
    const redeemed = await this.deps.entra.redeemCode(context, {
      code: params.code,
      redirectUri: state.redirectUri,
      verifier,
      nonce: state.nonce,
      scope: userScopesOf(service.config).join(' '),
    });
    if (!redeemed.refreshToken) {
      throw new ConsentFailedError(
        'redemption_failed',
        'the identity provider issued no refresh token (is offline_access allowed for this app?)',
      );
    }
    const now = this.now();
    const grant: UserGrant = {
      service: name,
      userKey: state.userKey,
      grantId: randomUUID(),
      generation: 0,
      refreshToken: await this.deps.sealer.seal(redeemed.refreshToken, {
        purpose: 'token-broker:refresh-token',
        service: name,
        user_key: state.userKey,
      }),
      ...redeemed.identity,
      connectedAt: now,
    };
    await this.deps.grants.put(grant);
    this.deps.logger.info('audit: user connected', {
      serviceName: name,
      userKey: state.userKey,
      oid: grant.oid,
      startedBy: state.caller,
    });
    return { grant, ...(state.returnTo !== undefined ? { returnTo: state.returnTo } : {}) };
  }
}
