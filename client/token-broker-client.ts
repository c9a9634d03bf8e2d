import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { z } from 'zod';
import { TokenBrokerError, TokenBrokerResponseError } from './errors';
import {
  type ApiCall,
  type Clock,
  type RetryNotice,
  type RetryOptions,
  SignedTransport,
  systemClock,
} from './transport';

export interface TokenBrokerClientOptions {
  /**
   * The API's base URL, the stage included: `https://abc123.execute-api.eu-west-1.amazonaws.com/prod`, or
   * `http://127.0.0.1:3000` for `npm start`. Default: the `TOKEN_BROKER_URL` environment variable.
   */
  endpoint?: string;
  /**
   * The API's region (signatures are scoped to it). Default: the region in an execute-api host name, else
   * `AWS_REGION` / `AWS_DEFAULT_REGION`.
   */
  region?: string;
  /** Credentials to sign with. Default: the AWS SDK's provider chain (environment, profile, SSO, container, instance). */
  credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  /** Profile for the default provider chain (else `AWS_PROFILE`). */
  profile?: string;
  /** A cached token is used until `expires_in` minus this many seconds (default 60). */
  refreshMarginSeconds?: number;
  /** Timeout of one HTTP request (default 30 s; API Gateway gives up after 29 s). */
  requestTimeoutMs?: number;
  retry?: RetryOptions;
  /** Called before each retry (for logging; the reason never contains a token or secret). */
  onRetry?: (retry: RetryNotice) => void;
  /** For tests: the clock of the cache and of the retry waits, the jitter source, the HTTP client. */
  clock?: Clock;
  random?: () => number;
  fetch?: typeof fetch;
}

export interface TokenRequestOptions {
  /** One of the service's scopes (default: its first). */
  scope?: string;
  /** The token must stay valid for at least this many seconds (0-3600; at least the refresh margin). */
  minTtl?: number;
}

/** A token from the broker. */
export interface BrokerToken {
  accessToken: string;
  tokenType: string;
  scope: string;
  /** When the token expires, from the broker. */
  expiresAt: Date;
  /** When the broker got the token from Entra. */
  acquiredAt: Date;
  /** Seconds the token had left when the broker answered. */
  expiresIn: number;
}

/** A service as the admin routes show it (never with its secret). */
export type ServiceView = { name: string } & Record<string, unknown>;

/** A service and its version, for `If-Match` on a later update or delete. */
export interface VersionedService {
  service: ServiceView;
  /** The `ETag` header, e.g. `"3"`. */
  etag?: string;
}

const TokenResponseSchema = z.object({
  access_token: z.string().min(1),
  token_type: z.string().min(1),
  expires_in: z.number().int().nonnegative(),
  expires_at: z.iso.datetime(),
  acquired_at: z.iso.datetime(),
  scope: z.string(),
});

const ServiceSchema = z.looseObject({ name: z.string() });

interface CacheEntry {
  token: BrokerToken;
  /** Local clock (ms) at which the token has no life left, from `expires_in` at receipt. */
  expiresAtLocal: number;
}

const REGION_IN_HOST = /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/;

/**
 * Gets Entra tokens from Token Broker with SigV4-signed calls. Keep one instance per process (in a Lambda, at module
 * scope): it holds tokens in memory until `expires_in` minus the margin, lets one request per service and scope
 * fly at a time, and retries 429/503/504 with jittered backoff, honouring Retry-After within a budget.
 *
 * ```ts
 * const broker = new TokenBrokerClient({ endpoint: process.env.TOKEN_BROKER_URL });
 * const { accessToken } = await broker.getToken('azure_ad_api');
 * ```
 */
export class TokenBrokerClient {
  private readonly transport: SignedTransport;
  private readonly clock: Clock;
  private readonly marginMs: number;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inFlight = new Map<string, { forced: boolean; promise: Promise<CacheEntry> }>();

  constructor(options: TokenBrokerClientOptions = {}) {
    const endpoint = options.endpoint ?? process.env.TOKEN_BROKER_URL;
    if (!endpoint) {
      throw new TokenBrokerError('no endpoint: pass `endpoint` or set TOKEN_BROKER_URL to the API URL');
    }
    let host: string;
    try {
      host = new URL(endpoint).hostname;
    } catch (error) {
      throw new TokenBrokerError(`endpoint "${endpoint}" is not a URL`, { cause: error });
    }
    const region =
      options.region ??
      REGION_IN_HOST.exec(host)?.[1] ??
      process.env.AWS_REGION ??
      process.env.AWS_DEFAULT_REGION;
    if (!region) {
      throw new TokenBrokerError(
        'no region: pass `region` or set AWS_REGION (the API is signed for its region)',
      );
    }
    this.clock = options.clock ?? systemClock;
    this.marginMs = (options.refreshMarginSeconds ?? 60) * 1000;
    this.transport = new SignedTransport({
      endpoint,
      region,
      // The chain is memoized and refreshes expiring credentials by itself; built lazily on first use.
      credentials: options.credentials ?? fromNodeProviderChain({ profile: options.profile }),
      fetch: options.fetch ?? globalThis.fetch,
      clock: this.clock,
      random: options.random ?? Math.random,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      retry: { budgetMs: 15_000, maxAttempts: 4, baseDelayMs: 200, maxDelayMs: 5_000, ...options.retry },
      onRetry: options.onRetry,
    });
  }

  /**
   * A token of the service: from memory while it has more than the margin (and `minTtl`) left, otherwise from
   * the broker (`GET /api/v2/{service}/client_credentials`). Concurrent calls for the same token share one request.
   */
  async getToken(service: string, options: TokenRequestOptions = {}): Promise<BrokerToken> {
    const key = cacheKey(service, options.scope);
    const needMs = Math.max(this.marginMs, (options.minTtl ?? 0) * 1000);
    const cached = this.cache.get(key);
    if (cached && cached.expiresAtLocal - this.clock.now() > needMs) return this.withLifeLeft(cached);
    const flight = this.inFlight.get(key);
    if (flight) {
      const entry = await flight.promise;
      if (entry.expiresAtLocal - this.clock.now() > needMs) return this.withLifeLeft(entry);
    }
    return this.withLifeLeft(await this.fly(key, false, () => this.requestToken('GET', service, options)));
  }

  /** A new token from Entra (`POST`), replacing the broker's cached one and this client's. */
  async forceRefresh(service: string, options: { scope?: string } = {}): Promise<BrokerToken> {
    const key = cacheKey(service, options.scope);
    const flight = this.inFlight.get(key);
    if (flight?.forced) return this.withLifeLeft(await flight.promise);
    // One request per key at a time: a GET in flight finishes first (its result is replaced anyway).
    if (flight) await flight.promise.catch(() => undefined);
    const again = this.inFlight.get(key);
    if (again?.forced) return this.withLifeLeft(await again.promise);
    return this.withLifeLeft(await this.fly(key, true, () => this.requestToken('POST', service, options)));
  }

  /** Clears the service's cached tokens in the broker (`DELETE`) and in this client. */
  async clear(service: string): Promise<void> {
    for (const key of this.cache.keys()) if (key.startsWith(`${service}\n`)) this.cache.delete(key);
    await this.transport.send({
      method: 'DELETE',
      path: `/api/v2/${encodeURIComponent(service)}/client_credentials`,
      idempotent: true,
    });
  }

  /** Every service (`GET /api/v2/system/service`), never with secrets. */
  async listServices(): Promise<ServiceView[]> {
    const response = await this.transport.send({
      method: 'GET',
      path: '/api/v2/system/service',
      idempotent: true,
    });
    const parsed = z.object({ resource: z.array(ServiceSchema) }).safeParse(response.body);
    if (!parsed.success) throw new TokenBrokerResponseError('the service list is not {"resource": [...]}');
    return parsed.data.resource;
  }

  /** One service and its version. */
  async getService(name: string): Promise<VersionedService> {
    return this.serviceCall({ method: 'GET', path: servicePath(name), idempotent: true });
  }

  /** Registers a service (the body of `POST /api/v2/system/service`); its client secret goes to Secrets Manager. */
  async createService(body: Record<string, unknown>): Promise<VersionedService> {
    return this.serviceCall({ method: 'POST', path: '/api/v2/system/service', body, idempotent: false });
  }

  /** Changes fields of a service (`PATCH`); with `ifMatch`, only if it is still at that version. */
  async updateService(
    name: string,
    patch: Record<string, unknown>,
    options: { ifMatch?: string } = {},
  ): Promise<VersionedService> {
    return this.serviceCall({
      method: 'PATCH',
      path: servicePath(name),
      body: patch,
      headers: ifMatchHeader(options.ifMatch),
      idempotent: false,
    });
  }

  /** Replaces the service's client secret (its cached tokens become unreachable at once). */
  async rotateSecret(name: string, clientSecret: string, options: { ifMatch?: string } = {}) {
    if (clientSecret.length === 0) throw new TokenBrokerError('the new client secret is empty');
    return this.updateService(name, { config: { client_secret: clientSecret } }, options);
  }

  /** Deletes the service, its cached tokens and its managed secret. */
  async deleteService(name: string, options: { ifMatch?: string } = {}): Promise<VersionedService> {
    return this.serviceCall({
      method: 'DELETE',
      path: servicePath(name),
      headers: ifMatchHeader(options.ifMatch),
      idempotent: false,
    });
  }

  private async serviceCall(call: ApiCall): Promise<VersionedService> {
    const response = await this.transport.send(call);
    const parsed = ServiceSchema.safeParse(response.body);
    if (!parsed.success) throw new TokenBrokerResponseError('the broker did not answer with a service');
    return { service: parsed.data, etag: response.headers.get('etag') ?? undefined };
  }

  /** Runs `request` as the one flight of `key`, caching its token. */
  private fly(key: string, forced: boolean, request: () => Promise<CacheEntry>): Promise<CacheEntry> {
    const promise = request()
      .then((entry) => {
        this.cache.set(key, entry);
        return entry;
      })
      .finally(() => {
        if (this.inFlight.get(key)?.promise === promise) this.inFlight.delete(key);
      });
    this.inFlight.set(key, { forced, promise });
    return promise;
  }

  private async requestToken(
    method: 'GET' | 'POST',
    service: string,
    options: TokenRequestOptions,
  ): Promise<CacheEntry> {
    const response = await this.transport.send({
      method,
      path: `/api/v2/${encodeURIComponent(service)}/client_credentials`,
      query: {
        scope: options.scope,
        min_ttl: options.minTtl === undefined || method === 'POST' ? undefined : String(options.minTtl),
      },
      // A forced refresh may be repeated: the second answer is just another fresh token.
      idempotent: true,
    });
    const parsed = TokenResponseSchema.safeParse(response.body);
    if (!parsed.success) {
      const fields = [...new Set(parsed.error.issues.map((i) => i.path.join('.')))].filter(Boolean);
      throw new TokenBrokerResponseError(
        `the broker's token response is not valid (${fields.length ? fields.join(', ') : 'not a JSON object'})`,
      );
    }
    const body = parsed.data;
    return {
      token: {
        accessToken: body.access_token,
        tokenType: body.token_type,
        scope: body.scope,
        expiresAt: new Date(body.expires_at),
        acquiredAt: new Date(body.acquired_at),
        expiresIn: body.expires_in,
      },
      expiresAtLocal: this.clock.now() + body.expires_in * 1000,
    };
  }

  private withLifeLeft(entry: CacheEntry): BrokerToken {
    return {
      ...entry.token,
      expiresIn: Math.max(0, Math.floor((entry.expiresAtLocal - this.clock.now()) / 1000)),
    };
  }
}

function cacheKey(service: string, scope: string | undefined): string {
  return `${service}\n${scope ?? ''}`;
}

function servicePath(name: string): string {
  return `/api/v2/system/service/${encodeURIComponent(name)}`;
}

function ifMatchHeader(ifMatch: string | undefined): Record<string, string> | undefined {
  if (ifMatch === undefined) return undefined;
  return { 'if-match': ifMatch.startsWith('"') || ifMatch.startsWith('W/') ? ifMatch : `"${ifMatch}"` };
}
