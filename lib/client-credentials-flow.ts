import { randomUUID } from 'node:crypto';
import type { Logger } from '@aws-lambda-powertools/logger';
import { type AuthorityPolicy, tokenEndpointFor } from './authority';
import { type ClientCredential, credentialFromSecret } from './credentials/credential';
import type { EntraTokenClient } from './entra-token-client';
import {
  GrantNotEnabledError,
  IdentityProviderError,
  IdentityProviderTimeoutError,
  IdentityProviderUnavailableError,
  NotFoundError,
  ServiceInactiveError,
  StoreError,
  ValidationError,
} from './errors';
import { type MetricsSink, NO_METRICS } from './metrics';
import type { RefreshCoordinator } from './refresh-lease';
import type { SecretStore } from './secret-store';
import { allowsClientCredentials, type ServiceRecord, scopesOf } from './service-config';
import type { ServiceRegistry } from './service-registry';
import { type CachedToken, type CacheKey, isServable, type TokenCache } from './token-cache';

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
  /** The token itself, for audit fingerprints (never logged). */
  token: CachedToken;
}

/** Tunables of the flow; every one has a production default. */
export interface FlowSettings {
  /** Fraction of a token's lifetime after which it is refreshed ahead (when Entra sends no refresh_in). */
  refreshFraction: number;
  /** How long a refresh lease holds before another instance may take it over. */
  leaseTtlMs: number;
  /** How long a request waits for another instance's refresh before asking Entra itself. */
  leaseWaitMs: number;
  /** Poll interval while waiting for another instance's refresh. */
  leasePollMs: number;
  /** Total time one token request may spend on Entra, retries and Retry-After waits included. */
  retryBudgetMs: number;
  /** After Entra refuses a service (4xx error), callers get the refusal for this long without asking Entra. */
  cooldownMs: number;
  /** How long a client secret read from Secrets Manager is reused in this process. */
  secretCacheTtlMs: number;
  /** A token's `last_used_at` is updated on a hit when older than this (bounds the writes hits cause). */
  touchIntervalMs: number;
}

export const DEFAULT_FLOW_SETTINGS: FlowSettings = {
  refreshFraction: 0.5,
  leaseTtlMs: 15_000,
  leaseWaitMs: 5_000,
  leasePollMs: 100,
  retryBudgetMs: 12_000,
  cooldownMs: 30_000,
  secretCacheTtlMs: 5 * 60_000,
  touchIntervalMs: 5 * 60_000,
};

export interface ClientCredentialsFlowDependencies {
  registry: ServiceRegistry;
  cache: TokenCache;
  coordinator: RefreshCoordinator;
  secrets: SecretStore;
  entra: EntraTokenClient;
  authority: AuthorityPolicy;
  logger: Logger;
  metrics?: MetricsSink;
  settings?: Partial<FlowSettings>;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

export interface GetTokenOptions {
  /** One of the service's scopes; the service's first scope when omitted. */
  scope?: string;
  /** Skip the cache and ask Entra for a new token (POST). */
  forceRefresh?: boolean;
  /** The caller needs at least this many seconds of validity; a cached token with less is refreshed first. */
  minTtlSeconds?: number;
}

/** ISO-8601 UTC without milliseconds, as DreamFactory prints times. */
export function isoSeconds(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const MEMORY_LIMIT = 1000;

/** A Map that forgets its oldest entry beyond a size limit (process memory stays bounded). */
function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MEMORY_LIMIT) map.delete(map.keys().next().value as K);
}

const keyString = (key: CacheKey): string => `${key.service}\u0000${key.version}\u0000${key.scope}`;

type Mode = 'request' | 'force' | 'background';

/** What the scheduled refresh did for one scope of a service. */
export type ScheduledOutcome = 'refreshed' | 'fresh' | 'unused' | 'not-cached' | 'failed';

/**
 * DreamFactory's client credentials flow on AWS, built to ask Entra as rarely as possible:
 * - tokens are served from the DynamoDB cache while they have more than 60 s (or the caller's min_ttl) left;
 * - past a token's refresh point, one background refresh runs while callers keep getting the valid token;
 * - when many instances miss at once, a lease lets one ask Entra and the others wait for its token;
 * - Entra failures are retried within a budget, Retry-After is honoured, refusals are cooled down;
 * - when DynamoDB fails, the process keeps serving from memory and fetches directly.
 */
export class ClientCredentialsFlow {
  private readonly deps: ClientCredentialsFlowDependencies;
  private readonly settings: FlowSettings;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private readonly metrics: MetricsSink;
  /** In-process single flight: one Entra request per key at a time in this process. */
  private readonly inflight = new Map<string, Promise<CachedToken>>();
  /** Last good tokens and services, used only while DynamoDB is failing. */
  private readonly memoryTokens = new Map<string, CachedToken>();
  private readonly lastKnownServices = new Map<string, ServiceRecord>();
  private readonly secretCache = new Map<string, { credential: ClientCredential; readAt: number }>();
  private readonly background = new Set<Promise<unknown>>();
  /** Keys with a background refresh running in this process. */
  private readonly refreshing = new Set<string>();

  constructor(deps: ClientCredentialsFlowDependencies) {
    this.deps = deps;
    this.settings = { ...DEFAULT_FLOW_SETTINGS, ...deps.settings };
    this.now = deps.now ?? Date.now;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.random = deps.random ?? Math.random;
    this.metrics = deps.metrics ?? NO_METRICS;
  }

  /** Resolves once every background refresh started so far has finished (tests; graceful shutdown). */
  async settled(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /** Runs a store call; on a StoreError logs and counts the degradation and returns `fallback()` instead. */
  private async degradable<T>(what: string, call: () => Promise<T>, fallback: () => T): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof StoreError)) throw error;
      this.metrics.count('StoreDegraded');
      this.deps.logger.warn('store unavailable, degrading', { operation: what, error });
      return fallback();
    }
  }

  /** Looks the service up and checks that it may use this flow; NotFound, Inactive or GrantNotEnabled otherwise. */
  private async usableService(name: string): Promise<ServiceRecord> {
    let service: ServiceRecord | undefined;
    try {
      service = await this.deps.registry.get(name);
      if (service) remember(this.lastKnownServices, name, service);
    } catch (error) {
      // DynamoDB trouble: keep serving the services this instance already knows.
      const known = this.lastKnownServices.get(name);
      if (!(error instanceof StoreError) || !known) throw error;
      this.metrics.count('StoreDegraded');
      this.deps.logger.warn('services table unavailable, using the last known configuration', {
        serviceName: name,
        error,
      });
      service = known;
    }
    if (!service) throw new NotFoundError(`service "${name}" does not exist`);
    if (!service.is_active) throw new ServiceInactiveError(`service "${name}" is not active`);
    if (!allowsClientCredentials(service.config)) {
      throw new GrantNotEnabledError(
        `service "${name}" does not allow the client credentials grant (grant_type is "${service.config.grant_type}" and is_client_credentials is false)`,
      );
    }
    return service;
  }

  /** Returns a token for the service: from the cache (GET) or freshly from Entra (forced, or nothing usable cached). */
  async getToken(name: string, options: GetTokenOptions = {}): Promise<TokenResult> {
    // The service's cached items are read at the same time as the service itself: a hit costs one round trip.
    const lookup = options.forceRefresh
      ? undefined
      : this.degradable(
          'token cache read',
          () => this.deps.cache.lookup(name),
          () => undefined,
        );
    // Settled before anything can throw below, so a failed read never becomes an unhandled rejection.
    void lookup?.catch(() => undefined);
    const service = await this.usableService(name);
    const scopes = scopesOf(service.config);
    const scope = options.scope ?? (scopes[0] as string);
    if (!scopes.includes(scope)) {
      throw new ValidationError(`scope: "${scope}" is not one of the scopes of service "${name}"`, {
        context: { field: 'scope', allowed: scopes },
      });
    }
    const key: CacheKey = { service: name, version: service.version, scope };
    const minTtlMs = (options.minTtlSeconds ?? 0) * 1000;

    if (!options.forceRefresh) {
      const found = await lookup;
      const cached = found
        ? await this.degradable(
            'token cache read',
            () => found.get(key),
            () => this.fromMemory(key),
          )
        : this.fromMemory(key);
      if (cached && cached.expiresAt - this.now() >= minTtlMs) {
        if (this.now() >= cached.refreshAt) this.refreshAhead(service, key);
        else if (
          cached.lastUsedAt === undefined ||
          this.now() - cached.lastUsedAt > this.settings.touchIntervalMs
        ) {
          this.touch(key);
        }
        // Kept in memory too, so this instance can go on serving it if DynamoDB fails.
        remember(this.memoryTokens, keyString(key), cached);
        this.metrics.count('CacheHit');
        return { body: this.responseBody(cached), cache: 'hit', token: cached };
      }
    }

    const mode: Mode = options.forceRefresh ? 'force' : 'request';
    const token = await this.singleFlight(key, () => this.obtain(service, key, mode, minTtlMs));
    this.metrics.count(options.forceRefresh ? 'CacheRefresh' : 'CacheMiss');
    return { body: this.responseBody(token), cache: options.forceRefresh ? 'refresh' : 'miss', token };
  }

  /** Records (in the background, best effort) that a cached token is in use, for the scheduled refresh. */
  private touch(key: CacheKey): void {
    const at = this.now();
    const touched = this.deps.cache.touch(key, at).catch((error) => {
      this.deps.logger.debug('last_used_at not recorded', { serviceName: key.service, error });
    });
    this.background.add(touched);
    void touched.finally(() => this.background.delete(touched));
  }

  /**
   * The scheduled refresh (EventBridge): refreshes the service's cached tokens that were served within
   * `usedWithinMs` and reach their refresh point within `horizonMs`, so callers nearly always hit the cache.
   * Works under the same lease as request-driven refreshes; never throws for one scope's failure.
   */
  async refreshDue(
    name: string,
    horizonMs: number,
    usedWithinMs: number,
  ): Promise<Record<string, ScheduledOutcome>> {
    const service = await this.usableService(name);
    const outcomes: Record<string, ScheduledOutcome> = {};
    for (const scope of scopesOf(service.config)) {
      const key: CacheKey = { service: name, version: service.version, scope };
      const cached = await this.deps.cache.get(key);
      const now = this.now();
      if (!cached) outcomes[scope] = 'not-cached';
      else if ((cached.lastUsedAt ?? cached.acquiredAt) < now - usedWithinMs) outcomes[scope] = 'unused';
      else if (cached.refreshAt > now + horizonMs) outcomes[scope] = 'fresh';
      else {
        const holder = randomUUID();
        try {
          // Under the same lease as request-driven refreshes: if an instance is refreshing right now, leave it.
          if (!(await this.deps.coordinator.acquire(key, holder, this.settings.leaseTtlMs))) {
            outcomes[scope] = 'fresh';
            continue;
          }
          try {
            await this.singleFlight(key, () => this.fetchAndStore(service, key));
          } finally {
            await this.deps.coordinator.release(key, holder);
          }
          outcomes[scope] = 'refreshed';
        } catch (error) {
          this.deps.logger.warn('scheduled refresh failed', { serviceName: name, scope, error });
          outcomes[scope] = 'failed';
        }
      }
    }
    return outcomes;
  }

  /** Removes every cached token (and lease and cool-down) of the service. The service must exist (404 otherwise). */
  async clearTokens(name: string): Promise<number> {
    const service = await this.deps.registry.get(name);
    if (!service) throw new NotFoundError(`service "${name}" does not exist`);
    for (const k of this.memoryTokens.keys()) if (k.startsWith(`${name}\u0000`)) this.memoryTokens.delete(k);
    return this.deps.cache.clear(name);
  }

  private fromMemory(key: CacheKey): CachedToken | undefined {
    const token = this.memoryTokens.get(keyString(key));
    return token && isServable(token, this.now()) ? token : undefined;
  }

  private singleFlight(key: CacheKey, run: () => Promise<CachedToken>): Promise<CachedToken> {
    const k = keyString(key);
    const running = this.inflight.get(k);
    if (running) return running;
    const promise = run().finally(() => this.inflight.delete(k));
    this.inflight.set(k, promise);
    return promise;
  }

  /** Starts one background refresh of `key` unless one is already running in this process. */
  private refreshAhead(service: ServiceRecord, key: CacheKey): void {
    const k = keyString(key);
    if (this.refreshing.has(k) || this.inflight.has(k)) return;
    this.refreshing.add(k);
    this.metrics.count('RefreshAhead');
    const refresh = this.obtain(service, key, 'background', 0)
      .catch((error) => {
        // Callers keep getting the still-valid token; the next request past the refresh point tries again.
        this.metrics.count('RefreshAheadFailures');
        this.deps.logger.warn('refresh-ahead failed', { serviceName: key.service, scope: key.scope, error });
      })
      .finally(() => {
        this.refreshing.delete(k);
        this.background.delete(refresh);
      });
    this.background.add(refresh);
  }

  /** Whether a token already in the cache satisfies this request, so Entra need not be asked. */
  private satisfies(token: CachedToken | undefined, mode: Mode, minTtlMs: number): token is CachedToken {
    if (!token || mode === 'force') return false;
    const now = this.now();
    if (token.expiresAt - now < minTtlMs) return false;
    return mode !== 'background' || token.refreshAt > now;
  }

  /**
   * Gets a token from Entra under the cross-instance lease. Without the lease, a request waits (bounded) for the
   * holder's token and then, if none came, asks Entra itself; a background refresh simply leaves it to the holder.
   */
  private async obtain(
    service: ServiceRecord,
    key: CacheKey,
    mode: 'background',
    minTtlMs: number,
  ): Promise<CachedToken | undefined>;
  private async obtain(
    service: ServiceRecord,
    key: CacheKey,
    mode: Mode,
    minTtlMs: number,
  ): Promise<CachedToken>;
  private async obtain(
    service: ServiceRecord,
    key: CacheKey,
    mode: Mode,
    minTtlMs: number,
  ): Promise<CachedToken | undefined> {
    await this.throwIfCoolingDown(key);

    const holder = randomUUID();
    const leased = await this.degradable(
      'lease write',
      () => this.deps.coordinator.acquire(key, holder, this.settings.leaseTtlMs),
      () => true, // DynamoDB trouble: in-process single flight is all the coordination left.
    );
    if (!leased) {
      // A background refresh leaves it to the holder: callers are being served the valid token meanwhile.
      if (mode === 'background') return undefined;
      // A forced refresh wants a token newer than any in flight: waiting for the holder's would not give one.
      if (mode === 'force') return this.fetchAndStore(service, key);
      const token = await this.waitForHolder(key, mode, minTtlMs);
      if (token) return token;
      this.metrics.count('LeaseWaitTimeouts');
      // The holder may have been refused meanwhile: pass its refusal on rather than asking Entra again.
      await this.throwIfCoolingDown(key);
      return this.fetchAndStore(service, key);
    }
    try {
      // Another instance may have finished between our cache read and our lease.
      const fresh = await this.degradable(
        'token cache read',
        () => this.deps.cache.get(key),
        () => undefined,
      );
      if (this.satisfies(fresh, mode, minTtlMs)) return fresh;
      return await this.fetchAndStore(service, key);
    } finally {
      await this.degradable(
        'lease release',
        () => this.deps.coordinator.release(key, holder),
        () => undefined,
      );
    }
  }

  /** Throws the remembered refusal while `key` is cooling down after Entra refused it. */
  private async throwIfCoolingDown(key: CacheKey): Promise<void> {
    const cooldown = await this.degradable(
      'cool-down read',
      () => this.deps.coordinator.coolingDown(key),
      () => undefined,
    );
    if (!cooldown) return;
    this.metrics.count('CooldownRefusals');
    throw new IdentityProviderError(cooldown.message, {
      context: { ...cooldown.context, cooldown_until: isoSeconds(cooldown.until) },
    });
  }

  /** Polls the cache for the lease holder's token for up to the lease wait; undefined when none came. */
  private async waitForHolder(key: CacheKey, mode: Mode, minTtlMs: number): Promise<CachedToken | undefined> {
    this.metrics.count('LeaseWaits');
    const deadline = this.now() + this.settings.leaseWaitMs;
    while (this.now() < deadline) {
      await this.sleep(this.settings.leasePollMs);
      let token: CachedToken | undefined;
      try {
        token = await this.deps.cache.get(key);
      } catch (error) {
        if (!(error instanceof StoreError)) throw error;
        // DynamoDB trouble while waiting: stop waiting and fetch directly.
        this.metrics.count('StoreDegraded');
        return undefined;
      }
      if (this.satisfies(token, mode, minTtlMs)) return token;
      // The holder was refused: its waiters get the refusal now, not after the whole wait.
      await this.throwIfCoolingDown(key);
    }
    return undefined;
  }

  private async fetchAndStore(service: ServiceRecord, key: CacheKey): Promise<CachedToken> {
    const token = await this.fetchWithRetries(service, key);
    remember(this.memoryTokens, keyString(key), token);
    await this.degradable(
      'token cache write',
      () => this.deps.cache.put(key, token),
      () => undefined,
    );
    return token;
  }

  private async credentialFor(service: ServiceRecord, fresh: boolean): Promise<ClientCredential> {
    const cached = this.secretCache.get(service.secret.arn);
    if (!fresh && cached && this.now() - cached.readAt < this.settings.secretCacheTtlMs)
      return cached.credential;
    const credential = credentialFromSecret(await this.deps.secrets.read(service.secret.arn));
    remember(this.secretCache, service.secret.arn, { credential, readAt: this.now() });
    return credential;
  }

  /** Full-jitter exponential backoff: a random delay up to 200 ms × 2^attempt, at most 2 s. */
  private backoff(attempt: number): number {
    return Math.floor(this.random() * Math.min(2000, 200 * 2 ** attempt));
  }

  /**
   * Asks Entra, retrying 5xx, timeouts and resets with backoff, and 429/503 after Retry-After, all within the retry
   * budget; re-reads the secret once on invalid_client (it may just have been rotated); cools the key down after
   * a refusal so that a broken service does not send every call to Entra.
   */
  private async fetchWithRetries(service: ServiceRecord, key: CacheKey): Promise<CachedToken> {
    const tokenEndpoint = tokenEndpointFor(service.config.authority_url, service.config.tenant_id);
    // Checked again here: the allow-list may have shrunk since the service was created.
    this.deps.authority.assertAllowed(tokenEndpoint);
    const deadline = this.now() + this.settings.retryBudgetMs;
    let rereadSecret = false;
    for (let attempt = 0; ; attempt++) {
      const credential = await this.credentialFor(service, rereadSecret && attempt > 0);
      const started = this.now();
      try {
        this.metrics.count('EntraRequests');
        const issued = await this.deps.entra.requestToken({
          tokenEndpoint,
          clientId: service.config.client_id,
          credential,
          scope: key.scope,
          timeoutMs: Math.max(1, deadline - started),
        });
        this.metrics.milliseconds('EntraLatency', this.now() - started);
        const lifetimeMs = issued.expiresAt - issued.acquiredAt;
        const refreshAfterMs =
          issued.refreshIn !== undefined
            ? issued.refreshIn * 1000
            : lifetimeMs * this.settings.refreshFraction;
        return {
          accessToken: issued.accessToken,
          scope: key.scope,
          acquiredAt: issued.acquiredAt,
          expiresAt: issued.expiresAt,
          refreshAt: issued.acquiredAt + refreshAfterMs,
        };
      } catch (error) {
        this.metrics.count('EntraFailures');
        const wait = this.retryDelay(error, attempt, rereadSecret);
        if (wait === 'reread-secret') {
          rereadSecret = true;
          continue;
        }
        if (wait === undefined || this.now() + wait >= deadline) {
          if (
            error instanceof IdentityProviderError &&
            !error.retryable &&
            typeof error.context?.error === 'string'
          ) {
            await this.degradable(
              'cool-down write',
              () =>
                this.deps.coordinator.coolDown(key, this.now() + this.settings.cooldownMs, {
                  message: error.message,
                  context: error.context,
                }),
              () => undefined,
            );
          }
          throw error;
        }
        this.metrics.count('EntraRetries');
        this.deps.logger.info('retrying Entra', {
          serviceName: key.service,
          attempt: attempt + 1,
          waitMs: wait,
        });
        await this.sleep(wait);
      }
    }
  }

  /** How long to wait before the next attempt; undefined when the error is not worth retrying. */
  private retryDelay(
    error: unknown,
    attempt: number,
    rereadSecret: boolean,
  ): number | 'reread-secret' | undefined {
    if (error instanceof IdentityProviderUnavailableError) {
      return error.retryAfterSeconds !== undefined ? error.retryAfterSeconds * 1000 : this.backoff(attempt);
    }
    if (error instanceof IdentityProviderTimeoutError) return this.backoff(attempt);
    if (error instanceof IdentityProviderError) {
      if (error.retryable) return this.backoff(attempt);
      if (error.context?.error === 'invalid_client' && !rereadSecret) return 'reread-secret';
    }
    return undefined;
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
