import { LRUCache } from 'lru-cache';
import * as oauth from 'oauth4webapi';
import type { AuthorityPolicy } from '../authority';
import type { ClientCredential } from '../credentials/credential';
import type { IssuedToken } from '../entra-token-client';
import {
  ConsentFailedError,
  type ErrorContext,
  IdentityProviderError,
  IdentityProviderTimeoutError,
  IdentityProviderUnavailableError,
} from '../errors';
import type { UserIdentity } from './user-grants';

/** Where one service's delegated requests go: its authority (policy-checked) and its app. */
export interface DelegatedClientContext {
  /** The v2.0 token endpoint (from lib/authority.ts `tokenEndpointFor`), already checked by the AuthorityPolicy. */
  tokenEndpoint: URL;
  clientId: string;
  credential: ClientCredential;
}

/** Tokens from a code or refresh token redemption. */
export interface DelegatedTokens {
  issued: IssuedToken;
  /** The rotated refresh token, when Entra sent one. */
  refreshToken?: string;
}

export interface EntraDelegatedClientOptions {
  authority: AuthorityPolicy;
  timeoutMs: number;
  now?: () => number;
  /** How long discovery documents and JWKS are reused in this process. */
  metadataTtlMs?: number;
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TOKEN_PATH = /\/oauth2\/v2\.0\/token$/;

interface Metadata {
  as: oauth.AuthorizationServer;
  /** The tenant GUID the issuer names: the `tid` every id_token must carry. */
  tenantId: string;
  jwks: oauth.JWKSCacheInput;
}

/**
 * The authorization code and refresh token grants against Entra, via oauth4webapi: the authority's OIDC discovery
 * document gives the authorize endpoint, the issuer and the JWKS; id_tokens are validated by oauth4webapi (iss, aud,
 * exp, iat, nonce) and their RS256 signature against the tenant's JWKS, then `tid` against the issuer's tenant.
 */
export class EntraDelegatedClient {
  private readonly options: EntraDelegatedClientOptions;
  private readonly metadata: LRUCache<string, Metadata>;

  constructor(options: EntraDelegatedClientOptions) {
    this.options = options;
    this.metadata = new LRUCache({ max: 100, ttl: options.metadataTtlMs ?? 60 * 60_000 });
  }

  private insecure(url: URL): boolean {
    // Plain http reaches here only for loopback hosts the operator listed (AuthorityPolicy).
    return url.protocol === 'http:';
  }

  /** The authority's discovery document (cached), with the token endpoint pinned to the policy-checked one. */
  private async discover(tokenEndpoint: URL): Promise<Metadata> {
    const cached = this.metadata.get(tokenEndpoint.href);
    if (cached) return cached;
    const issuerGuess = new URL(tokenEndpoint.href.replace(TOKEN_PATH, '/v2.0'));
    let response: Response;
    try {
      response = await oauth.discoveryRequest(issuerGuess, {
        algorithm: 'oidc',
        signal: AbortSignal.timeout(this.options.timeoutMs),
        [oauth.allowInsecureRequests]: this.insecure(issuerGuess),
      });
    } catch (error) {
      throw transportError(error, this.options.timeoutMs);
    }
    // A tenant addressed by domain is issued for by its GUID: accept that issuer when it is the same authority's.
    const issuer = await response
      .clone()
      .json()
      .then((doc: unknown) => (doc as { issuer?: unknown } | null)?.issuer)
      .then((value) => (typeof value === 'string' ? value : ''))
      .catch(() => '');
    const issuerUrl = URL.canParse(issuer) ? new URL(issuer) : undefined;
    const tenantId = issuerUrl?.pathname.split('/')[1] ?? '';
    const expected =
      issuerUrl &&
      issuerUrl.origin === issuerGuess.origin &&
      GUID.test(tenantId) &&
      issuerUrl.pathname === `/${tenantId}/v2.0`
        ? issuerUrl
        : issuerGuess;
    let as: oauth.AuthorizationServer;
    try {
      as = await oauth.processDiscoveryResponse(expected, response);
    } catch (error) {
      throw new IdentityProviderError('identity provider discovery document is not usable', {
        cause: error,
        context: { upstream_status: response.status },
      });
    }
    for (const endpoint of [as.authorization_endpoint, as.jwks_uri]) {
      if (endpoint === undefined)
        throw new IdentityProviderError('identity provider discovery document lacks endpoints');
      this.options.authority.assertAllowed(new URL(endpoint));
    }
    const metadata: Metadata = {
      as: { ...as, token_endpoint: tokenEndpoint.href },
      tenantId: GUID.test(tenantId) ? tenantId.toLowerCase() : '',
      jwks: {},
    };
    this.metadata.set(tokenEndpoint.href, metadata);
    return metadata;
  }

  /** The authorize endpoint of the service's authority (from discovery). */
  async authorizationEndpoint(tokenEndpoint: URL): Promise<URL> {
    return new URL((await this.discover(tokenEndpoint)).as.authorization_endpoint as string);
  }

  /**
   * Redeems an authorization code with its PKCE verifier and validates the id_token. Entra's refusal and an
   * invalid id_token become ConsentFailedError (the browser's page says what happened); transport failures stay
   * IdentityProvider* errors.
   */
  async redeemCode(
    context: DelegatedClientContext,
    request: { code: string; redirectUri: string; verifier: string; nonce: string; scope: string },
  ): Promise<DelegatedTokens & { identity: UserIdentity }> {
    const metadata = await this.discover(context.tokenEndpoint);
    const client = this.client(context);
    const acquiredAt = this.now();
    const insecure = this.insecure(context.tokenEndpoint);
    let response: Response;
    try {
      response = await oauth.authorizationCodeGrantRequest(
        metadata.as,
        client,
        context.credential.clientAuth(),
        // The state was checked (and consumed) by the caller before the code got here.
        oauth.validateAuthResponse(
          metadata.as,
          client,
          new URLSearchParams({ code: request.code }),
          oauth.skipStateCheck,
        ),
        request.redirectUri,
        request.verifier,
        {
          additionalParameters: { scope: request.scope },
          signal: AbortSignal.timeout(this.options.timeoutMs),
          [oauth.allowInsecureRequests]: insecure,
        },
      );
    } catch (error) {
      throw transportError(error, this.options.timeoutMs);
    }
    let result: oauth.TokenEndpointResponse;
    try {
      result = await oauth.processAuthorizationCodeResponse(metadata.as, client, response, {
        expectedNonce: request.nonce,
        requireIdToken: true,
      });
    } catch (error) {
      throw consentError(error, response.status);
    }
    try {
      await oauth.validateApplicationLevelSignature(metadata.as, response, {
        [oauth.jwksCache]: metadata.jwks,
        signal: AbortSignal.timeout(this.options.timeoutMs),
        [oauth.allowInsecureRequests]: this.insecure(new URL(metadata.as.jwks_uri as string)),
      });
    } catch (error) {
      throw new ConsentFailedError('id_token_invalid', 'the id_token signature is not valid', {
        cause: error,
      });
    }
    const claims = oauth.getValidatedIdTokenClaims(result) as oauth.IDToken & Record<string, unknown>;
    const tid = typeof claims.tid === 'string' ? claims.tid.toLowerCase() : '';
    const oid = typeof claims.oid === 'string' ? claims.oid : '';
    if (!oid || (metadata.tenantId !== '' && tid !== metadata.tenantId)) {
      throw new ConsentFailedError(
        'id_token_invalid',
        'the id_token does not name a user of the service’s tenant',
      );
    }
    return {
      ...tokensOf(result, acquiredAt, response.status),
      identity: {
        oid,
        tid,
        preferredUsername:
          typeof claims.preferred_username === 'string' ? claims.preferred_username : undefined,
      },
    };
  }

  /** Redeems a refresh token for an access token of `scope`; Entra's refusals are IdentityProviderError. */
  async refresh(
    context: DelegatedClientContext,
    refreshToken: string,
    scope: string,
    timeoutMs?: number,
  ): Promise<DelegatedTokens> {
    const { as } = await this.discover(context.tokenEndpoint);
    const client = this.client(context);
    const acquiredAt = this.now();
    const budget = Math.min(timeoutMs ?? this.options.timeoutMs, this.options.timeoutMs);
    let response: Response;
    try {
      response = await oauth.refreshTokenGrantRequest(
        as,
        client,
        context.credential.clientAuth(),
        refreshToken,
        {
          // Without openid: the user is known, so no id_token is asked for (nor checked).
          additionalParameters: { scope: `offline_access ${scope}` },
          signal: AbortSignal.timeout(budget),
          [oauth.allowInsecureRequests]: this.insecure(context.tokenEndpoint),
        },
      );
    } catch (error) {
      throw transportError(error, budget);
    }
    if (response.status === 429 || response.status === 503) {
      throw new IdentityProviderUnavailableError(
        `identity provider is unavailable (HTTP ${response.status})`,
        {
          context: { upstream_status: response.status },
        },
      );
    }
    let result: oauth.TokenEndpointResponse;
    try {
      result = await oauth.processRefreshTokenResponse(as, client, response);
    } catch (error) {
      if (error instanceof oauth.ResponseBodyError) {
        throw new IdentityProviderError(`${error.error}: ${firstLine(error.error_description)}`, {
          context: upstreamContext(response.status, error.cause as Record<string, unknown>),
        });
      }
      throw new IdentityProviderError('identity provider returned an invalid token response', {
        cause: error,
        context: { upstream_status: response.status },
        retryable: response.status >= 500,
      });
    }
    return tokensOf(result, acquiredAt, response.status);
  }

  private client(context: DelegatedClientContext): oauth.Client {
    // oauth4webapi checks iat/exp against Date.now(); the skew makes it follow the injected clock.
    const skew = Math.round((this.now() - Date.now()) / 1000);
    return { client_id: context.clientId, ...(skew !== 0 ? { [oauth.clockSkew]: skew } : {}) };
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }
}

function tokensOf(result: oauth.TokenEndpointResponse, acquiredAt: number, status: number): DelegatedTokens {
  const expiresIn = result.expires_in;
  if (result.token_type !== 'bearer' || typeof expiresIn !== 'number' || !(expiresIn > 0)) {
    throw new IdentityProviderError('identity provider returned an invalid token response', {
      context: { upstream_status: status },
    });
  }
  return {
    issued: {
      accessToken: result.access_token,
      tokenType: 'Bearer',
      expiresIn,
      acquiredAt,
      expiresAt: acquiredAt + expiresIn * 1000,
    },
    refreshToken: typeof result.refresh_token === 'string' ? result.refresh_token : undefined,
  };
}

/** A failed code redemption or id_token check, as the page the browser gets will name it. */
function consentError(error: unknown, status: number): Error {
  if (error instanceof oauth.ResponseBodyError) {
    return new ConsentFailedError(
      'redemption_failed',
      `${error.error}: ${firstLine(error.error_description)}`,
      {
        cause: error,
        context: upstreamContext(status, error.cause as Record<string, unknown>),
      },
    );
  }
  if (error instanceof oauth.OperationProcessingError) {
    const idToken =
      error.code === oauth.JWT_CLAIM_COMPARISON ||
      error.code === oauth.JWT_TIMESTAMP_CHECK ||
      /id_token|ID Token|JWT/i.test(error.message);
    if (idToken) {
      // oauth4webapi's message names the claim and rule (e.g. unexpected JWT "nonce" claim value), never a value.
      return new ConsentFailedError(
        'id_token_invalid',
        `the id_token is not valid: ${error.message.replaceAll('"', '')}`,
        {
          cause: error,
        },
      );
    }
  }
  return new ConsentFailedError(
    'redemption_failed',
    'the identity provider returned an invalid token response',
    {
      cause: error,
      context: { upstream_status: status },
    },
  );
}

function transportError(error: unknown, timeoutMs: number): Error {
  const name = (error as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new IdentityProviderTimeoutError(`identity provider did not answer within ${timeoutMs} ms`, {
      cause: error,
    });
  }
  return new IdentityProviderError('could not complete the request to the identity provider', {
    cause: error,
    retryable: true,
  });
}

function firstLine(text: unknown): string {
  return typeof text === 'string' ? (text.split(/\r?\n/)[0] ?? '').trim() : '';
}

function upstreamContext(status: number, body: Record<string, unknown> | undefined): ErrorContext {
  return {
    upstream_status: status,
    error: body?.error,
    error_codes: body?.error_codes,
    trace_id: body?.trace_id,
    correlation_id: body?.correlation_id,
  };
}
