import * as oauth from 'oauth4webapi';
import type { Dispatcher } from 'undici';
import type { ClientCredential } from './credentials/credential';
import { explainRefusal } from './credentials/entra-refusals';
import {
  BrokerError,
  CredentialUnavailableError,
  type ErrorContext,
  IdentityProviderError,
  IdentityProviderTimeoutError,
  IdentityProviderUnavailableError,
} from './errors';

/** One client credentials token request. */
export interface TokenRequest {
  /** The v2.0 token endpoint; must already have passed the AuthorityPolicy. */
  tokenEndpoint: URL;
  clientId: string;
  credential: ClientCredential;
  /** Exactly one `<resource>/.default` scope. */
  scope: string;
  /** Overrides the client's timeout for this request (what is left of a retry budget). */
  timeoutMs?: number;
  /** The request's budget: aborts the Entra request when it runs out (answered as a timeout). */
  signal?: AbortSignal;
}

/** A validated token from Entra, with absolute times in epoch milliseconds. */
export interface IssuedToken {
  accessToken: string;
  tokenType: 'Bearer';
  /** Lifetime Entra granted, in seconds. */
  expiresIn: number;
  /** Entra's proactive refresh hint (`refresh_in`), in seconds, when it sent one. */
  refreshIn?: number;
  /** When the request was sent: the token's lifetime is counted from here, never from when it arrived. */
  acquiredAt: number;
  expiresAt: number;
}

export interface EntraTokenClientOptions {
  /** Timeout of one token request, including reading the response. */
  timeoutMs: number;
  now?: () => number;
  /** Replaces global fetch (for fault injection in tests only). */
  fetch?: typeof fetch;
  /**
   * An HTTP proxy (`http://host:port`, the HTTPS_PROXY of a function in a VPC without a NAT gateway) that every
   * token request goes through: a CONNECT tunnel, TLS end to end between the broker and Entra.
   */
  httpsProxy?: string;
}

const MAX_RETRY_AFTER_SECONDS = 3600;

/**
 * `fetch` with every request sent through an undici ProxyAgent (the `dispatcher` option of Node's fetch). undici
 * is imported on the first request, and only with a proxy: it is about as large as the rest of the token bundle, so
 * a deployment without a proxy leaves it out of its bundle altogether (infra/token-broker/functions.ts).
 */
function throughProxy(fetchImpl: typeof fetch, proxyUrl: string): typeof fetch {
  let dispatcher: Promise<Dispatcher> | undefined;
  return async (input, init) => {
    dispatcher ??= import('undici').then(({ ProxyAgent }) => new ProxyAgent(proxyUrl));
    return fetchImpl(input, { ...init, dispatcher: await dispatcher } as RequestInit);
  };
}

/** Transport failures that a retry cannot fix: TLS trust and certificate errors, unknown hosts. */
const NON_RETRYABLE_TRANSPORT =
  /^(CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|ERR_TLS_|HOSTNAME_MISMATCH|ERR_SSL_|ENOTFOUND)/;

/** Parses Retry-After (delta seconds or HTTP date) into whole seconds, capped like MSAL does. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  const trimmed = value.trim();
  let seconds: number;
  if (/^\d+$/.test(trimmed)) seconds = Number(trimmed);
  // Otherwise only an HTTP-date (IMF-fixdate); Date.parse would also read "-5" or "1.5" as dates.
  else if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(trimmed)) return undefined;
  else {
    const at = Date.parse(trimmed);
    if (Number.isNaN(at)) return undefined;
    seconds = Math.ceil((at - now) / 1000);
  }
  return Math.min(Math.max(seconds, 0), MAX_RETRY_AFTER_SECONDS);
}

function firstLine(text: unknown): string {
  return typeof text === 'string' ? (text.split(/\r?\n/)[0] ?? '').trim() : '';
}

function isTimeout(error: unknown): boolean {
  // By name, not instanceof: fetch's DOMException may come from another realm.
  const name = (error as { name?: unknown } | null)?.name;
  return name === 'TimeoutError' || name === 'AbortError';
}

/**
 * What a failure of the credential becomes: the broker's own errors pass; an AWS service's refusal (KMS Sign,
 * STS) is named by its error type; anything else stays an internal error.
 */
function credentialError(error: unknown): unknown {
  if (error instanceof BrokerError) return error;
  const { name, $metadata } = (error ?? {}) as { name?: unknown; $metadata?: unknown };
  if ($metadata !== undefined && typeof name === 'string') {
    return new CredentialUnavailableError(
      `the service's credential could not be used: AWS answered ${name} (check the key or role the service uses and the broker's permissions on it)`,
      { cause: error, context: { aws_error: name } },
    );
  }
  return error;
}

/** Entra's JSON error body, as far as it is present. */
interface EntraErrorBody {
  error?: unknown;
  error_description?: unknown;
  error_codes?: unknown;
  trace_id?: unknown;
  correlation_id?: unknown;
}

function upstreamContext(status: number, body: EntraErrorBody | undefined): ErrorContext {
  return {
    upstream_status: status,
    error: body?.error,
    error_codes: body?.error_codes,
    trace_id: body?.trace_id,
    correlation_id: body?.correlation_id,
  };
}

async function readJsonError(response: Response): Promise<EntraErrorBody | undefined> {
  if (!/json/i.test(response.headers.get('content-type') ?? '')) return undefined;
  try {
    const body: unknown = await response.json();
    return body !== null && typeof body === 'object' ? (body as EntraErrorBody) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Requests tokens from Entra's v2.0 token endpoint with the client credentials grant, via oauth4webapi, and
 * turns every way that can go wrong into a named IdentityProvider* error. Response fields are validated
 * before a token is returned, so nothing invalid is ever cached.
 */
export class EntraTokenClient {
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly fetchImpl?: typeof fetch;

  constructor(options: EntraTokenClientOptions) {
    this.timeoutMs = options.timeoutMs;
    this.now = options.now ?? Date.now;
    this.fetchImpl = options.httpsProxy
      ? throughProxy(options.fetch ?? globalThis.fetch, options.httpsProxy)
      : options.fetch;
  }

  /** Sends one token request and returns the validated token, or throws an IdentityProvider* error. */
  async requestToken(request: TokenRequest): Promise<IssuedToken> {
    const as: oauth.AuthorizationServer = {
      issuer: request.tokenEndpoint.origin,
      token_endpoint: request.tokenEndpoint.href,
    };
    const client: oauth.Client = { client_id: request.clientId };
    const acquiredAt = this.now();
    const timeoutMs = Math.min(request.timeoutMs ?? this.timeoutMs, this.timeoutMs);
    const signal = request.signal
      ? AbortSignal.any([AbortSignal.timeout(timeoutMs), request.signal])
      : AbortSignal.timeout(timeoutMs);

    // Failures of the credential itself (KMS signing, STS) are told apart from failures to reach Entra.
    const clientAuth = request.credential.clientAuth();
    let credentialFailure: unknown;
    const guardedAuth: oauth.ClientAuth = async (...args) => {
      try {
        await clientAuth(...args);
      } catch (error) {
        credentialFailure = error;
        throw error;
      }
    };

    let response: Response;
    try {
      response = await oauth.clientCredentialsGrantRequest(
        as,
        client,
        guardedAuth,
        { scope: request.scope },
        {
          signal,
          // Plain http reaches here only for loopback hosts the operator listed (AuthorityPolicy).
          [oauth.allowInsecureRequests]: request.tokenEndpoint.protocol === 'http:',
          ...(this.fetchImpl ? { [oauth.customFetch]: this.fetchImpl } : {}),
        },
      );
    } catch (error) {
      if (credentialFailure !== undefined) throw credentialError(credentialFailure);
      throw this.transportError(error, timeoutMs);
    }

    try {
      return await this.readTokenResponse(as, client, response, acquiredAt, timeoutMs, request);
    } catch (error) {
      if (error instanceof IdentityProviderError || error instanceof IdentityProviderUnavailableError)
        throw error;
      throw this.transportError(error, timeoutMs);
    }
  }

  private transportError(error: unknown, timeoutMs: number): Error {
    if (isTimeout(error)) {
      return new IdentityProviderTimeoutError(`identity provider did not answer within ${timeoutMs} ms`, {
        cause: error,
      });
    }
    const code = (error as { cause?: { code?: unknown } })?.cause?.code;
    const detail = typeof code === 'string' ? ` (${code})` : '';
    return new IdentityProviderError(`could not complete the request to the identity provider${detail}`, {
      cause: error,
      // Resets and refused connections pass; an untrusted certificate or an unknown host does not.
      retryable: !(typeof code === 'string' && NON_RETRYABLE_TRANSPORT.test(code)),
    });
  }

  private async readTokenResponse(
    as: oauth.AuthorizationServer,
    client: oauth.Client,
    response: Response,
    acquiredAt: number,
    timeoutMs: number,
    request: TokenRequest,
  ): Promise<IssuedToken> {
    const status = response.status;
    if (status === 429 || status === 503) {
      const body = await readJsonError(response);
      const retryAfterSeconds = parseRetryAfter(response.headers.get('retry-after'), this.now());
      const what =
        typeof body?.error === 'string'
          ? `${body.error}: ${firstLine(body.error_description)}`
          : status === 429
            ? 'identity provider is throttling token requests (HTTP 429)'
            : 'identity provider is temporarily unavailable (HTTP 503)';
      throw new IdentityProviderUnavailableError(what, {
        retryAfterSeconds,
        context: upstreamContext(status, body),
      });
    }

    let result: oauth.TokenEndpointResponse;
    try {
      result = await oauth.processClientCredentialsResponse(as, client, response);
    } catch (error) {
      throw this.responseError(error, response, timeoutMs, request);
    }

    if (result.token_type !== 'bearer') {
      throw new IdentityProviderError(
        `identity provider returned an invalid token response: token_type is "${result.token_type}", expected Bearer`,
        { context: { upstream_status: status } },
      );
    }
    const expiresIn = result.expires_in;
    if (typeof expiresIn !== 'number' || !(expiresIn > 0)) {
      throw new IdentityProviderError(
        'identity provider returned an invalid token response: expires_in must be a positive number',
        { context: { upstream_status: status } },
      );
    }
    const refreshIn = Number(result.refresh_in);
    return {
      accessToken: result.access_token,
      tokenType: 'Bearer',
      expiresIn,
      refreshIn: Number.isFinite(refreshIn) && refreshIn > 0 && refreshIn < expiresIn ? refreshIn : undefined,
      acquiredAt,
      expiresAt: acquiredAt + expiresIn * 1000,
    };
  }

  private responseError(error: unknown, response: Response, timeoutMs: number, request: TokenRequest): Error {
    const status = response.status;
    if (error instanceof oauth.ResponseBodyError) {
      const body = error.cause as EntraErrorBody;
      const entraSays = `${error.error}: ${firstLine(error.error_description)}`;
      // Refusals of certificates and federated tokens get a message that says what to fix; Entra's own words follow.
      const explained = explainRefusal(body.error_codes, request.credential.facts, {
        clientId: request.clientId,
        tokenEndpoint: request.tokenEndpoint.href,
      });
      return new IdentityProviderError(explained ? `${explained.message} [Entra: ${entraSays}]` : entraSays, {
        context: upstreamContext(status, body),
        retryable: explained?.retryable ?? false,
      });
    }
    if (error instanceof oauth.WWWAuthenticateChallengeError) {
      return new IdentityProviderError(`identity provider rejected the client with HTTP ${status}`, {
        context: { upstream_status: status },
      });
    }
    if (error instanceof oauth.UnsupportedOperationError) {
      // oauth4webapi accepts only bearer and DPoP token types.
      return new IdentityProviderError(
        'identity provider returned an invalid token response: token_type is not Bearer',
        { context: { upstream_status: status } },
      );
    }
    if (error instanceof oauth.OperationProcessingError) {
      const contentType = response.headers.get('content-type') ?? 'no content type';
      const problem =
        error.code === oauth.RESPONSE_IS_NOT_CONFORM || error.code === oauth.RESPONSE_IS_NOT_JSON
          ? `unexpected HTTP ${status} response (${contentType.split(';')[0]})`
          : error.code === oauth.PARSE_ERROR
            ? 'response body is not valid JSON'
            : // oauth4webapi's messages name the field and rule, never the value (e.g. '"response" body "access_token" property must be a string').
              error.message.replaceAll('"response" body ', '').replaceAll('"', '');
      return new IdentityProviderError(`identity provider returned an invalid token response: ${problem}`, {
        context: { upstream_status: status },
        retryable: status >= 500,
      });
    }
    return this.transportError(error, timeoutMs);
  }
}
