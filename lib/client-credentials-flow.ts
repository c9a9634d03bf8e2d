import { randomUUID } from 'node:crypto';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { AuthorityPolicy } from './authority';
import type { CallOptions } from './call-options';
import { ClientCredentialsGrant, type TokenGrant } from './client-credentials-grant';
import { EntraRetryPolicy } from './entra-retry-policy';
import type { EntraTokenClient, IssuedToken } from './entra-token-client';
import { NotFoundError, ServiceInactiveError, ValidationError } from './errors';
import { type MetricsSink, NO_METRICS } from './metrics';
import { OutageFallback } from './outage-fallback';
import type { RefreshCoordinator } from './refresh-coordinator';
import { SecretCache } from './secret-cache';
import type { SecretStore } from './secret-store';
import { type ServiceRecord, scopesOf } from './service-config';
import type { ServiceRegistry } from './service-registry';
import type { CachedToken, CacheKey, TokenCache } from './token-cache';

/** How a token request was served, for logs and metrics. */
export type CacheOutcome = 'hit' | 'miss' | 'refresh';

/** A served token and how it was served; the HTTP layer shapes the response (lib/token-response.ts). */
export interface TokenResult {
  token: CachedToken;
  cache: CacheOutcome;
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

/**
 * Options of one token request; new per-request options (a credential hint) are added here. `signal` and
 * `deadline` are the request's time budget (from the handler): every AWS call of the request is aborted when it
 * runs out, Entra is not asked once it has, and retries and lease waits end with it.
 */
export interface GetTokenOptions extends CallOptions {
  /** One of the service's scopes; the service's first scope when omitted. */
  scope?: string;
  /** Skip the cache and ask Entra for a new token (POST). */
  forceRefresh?: boolean;
  /** The caller needs at least this many seconds of validity; a cached token with less is refreshed first. */
  minTtlSeconds?: number;
}

const keyString = (key: CacheKey): string => `${key.service}\u0000${key.version}\u0000${key.scope}`;

type Mode = 'request' | 'force' | 'background';

/** What the scheduled refresh did for one scope of a service. */
export type ScheduledOutcome = 'refreshed' | 'fresh' | 'unused' | 'not-cached' | 'failed';

/**
 * DreamFactory's client credentials flow on AWS, built to ask Entra as rarely as possible. This class only
 * orchestrates; each policy is its own module:
 * - tokens are served from the DynamoDB cache while they have more than 60 s (or the caller's min_ttl) left;
 * - past a token's refresh point, one background refresh runs while callers keep getting the valid token;
 * - when many instances miss at once, a lease (lib/refresh-coordinator.ts) lets one ask Entra and the others
 *   wait for its token;
 * - Entra failures are retried, Retry-After honoured and refusals cooled down (lib/entra-retry-policy.ts);
 * - how a token is asked for is the grant's business (lib/client-credentials-grant.ts, lib/secret-cache.ts);
 * - when DynamoDB fails, the process keeps serving what it knew (lib/outage-fallback.ts).
 */
export class ClientCredentialsFlow {
  private readonly deps: ClientCredentialsFlowDependencies;
  private readonly settings: FlowSettings;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly metrics: MetricsSink;
  /** The registry, cache and coordinator as request paths use them: degrading to memory while DynamoDB fails. */
  private readonly store: OutageFallback;
  private readonly grant: TokenGrant;
  private readonly retries: EntraRetryPolicy;
  /** In-process single flight: one Entra request per key at a time in this process. */
  private readonly inflight = new Map<string, Promise<CachedToken>>();
  /** Background work (refresh-ahead, last-use writes) still running, for {@link settled}. */
  private readonly background = new Set<Promise<unknown>>();
  /** Keys with a background refresh running in this process. */
  private readonly refreshing = new Set<string>();

  constructor(deps: ClientCredentialsFlowDependencies) {
    this.deps = deps;
    this.settings = { ...DEFAULT_FLOW_SETTINGS, ...deps.settings };
    this.now = deps.now ?? Date.now;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.metrics = deps.metrics ?? NO_METRICS;
    this.store = new OutageFallback({
      registry: deps.registry,
      cache: deps.cache,
      coordinator: deps.coordinator,
      logger: deps.logger,
      metrics: this.metrics,
      now: this.now,
    });
    this.grant = new ClientCredentialsGrant({
      entra: deps.entra,
      authority: deps.authority,
      credentials: new SecretCache({
        secrets: deps.secrets,
        ttlMs: this.settings.secretCacheTtlMs,
        now: this.now,
      }),
    });
    this.retries = new EntraRetryPolicy({
      coordinator: this.store.coordinator,
      logger: deps.logger,
      metrics: this.metrics,
      settings: this.settings,
      now: this.now,
      sleep: this.sleep,
      random: deps.random ?? Math.random,
    });
  }

  /** Resolves once every background refresh started so far has finished (tests; graceful shutdown). */
  async settled(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /** Looks the service up and checks that it may use this flow; NotFound, Inactive or GrantNotEnabled otherwise. */
  private async usableService(name: string, call?: CallOptions): Promise<ServiceRecord> {
    const service = await this.store.registry.get(name, call);
    if (!service) throw new NotFoundError(`service "${name}" does not exist`);
    if (!service.is_active) throw new ServiceInactiveError(`service "${name}" is not active`);
    this.grant.assertAllowed(service);
    return service;
  }

  /** Returns a token for the service: from the cache (GET) or freshly from Entra (forced, or nothing usable cached). */
  async getToken(name: string, options: GetTokenOptions = {}): Promise<TokenResult> {
    const call: CallOptions = { signal: options.signal, deadline: options.deadline };
    // The service's cached items are read at the same time as the service itself: a hit costs one round trip.
    const lookup = options.forceRefresh ? undefined : this.store.cache.lookup(name, call);
    // Settled before anything can throw below, so a failed read never becomes an unhandled rejection.
    void lookup?.catch(() => undefined);
    const service = await this.usableService(name, call);
    const scopes = scopesOf(service.config);
    const scope = options.scope ?? (scopes[0] as string);
    if (!scopes.includes(scope)) {
      throw new ValidationError(`scope: "${scope}" is not one of the scopes of service "${name}"`, {
        context: { field: 'scope', allowed: scopes },
      });
    }
    const key: CacheKey = { service: name, version: service.version, scope };
    const minTtlMs = (options.minTtlSeconds ?? 0) * 1000;

    if (lookup) {
      const cached = await (await lookup).get(key);
      if (cached && cached.expiresAt - this.now() >= minTtlMs) {
        if (this.now() >= cached.refreshAt) this.refreshAhead(service, key);
        else if (
          cached.lastUsedAt === undefined ||
          this.now() - cached.lastUsedAt > this.settings.touchIntervalMs
        ) {
          this.touch(key);
        }
        this.metrics.count('CacheHit');
        return { token: cached, cache: 'hit' };
      }
    }

    const mode: Mode = options.forceRefresh ? 'force' : 'request';
    const token = await this.singleFlight(key, () => this.obtain(service, key, mode, minTtlMs, call));
    this.metrics.count(options.forceRefresh ? 'CacheRefresh' : 'CacheMiss');
    return { token, cache: options.forceRefresh ? 'refresh' : 'miss' };
  }

  /** Records (in the background, best effort) that a cached token is in use, for the scheduled refresh. */
  private touch(key: CacheKey): void {
    const touched = this.store.cache.touch(key, this.now()).catch((error) => {
      this.deps.logger.debug('last_used_at not recorded', { serviceName: key.service, error });
    });
    this.track(touched);
  }

  private track(work: Promise<unknown>): void {
    this.background.add(work);
    void work.finally(() => this.background.delete(work));
  }

  /**
   * The scheduled refresh (EventBridge): refreshes the service's cached tokens that were served within
   * `usedWithinMs` and reach their refresh point within `horizonMs`, so callers nearly always hit the cache.
   * Works under the same lease as request-driven refreshes; never throws for one scope's failure. Unlike requests,
   * it does not degrade when DynamoDB fails: there is nobody to serve.
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
      else outcomes[scope] = await this.refreshScheduled(service, key);
    }
    return outcomes;
  }

  private async refreshScheduled(service: ServiceRecord, key: CacheKey): Promise<ScheduledOutcome> {
    const holder = randomUUID();
    try {
      // Under the same lease as request-driven refreshes: if an instance is refreshing right now, leave it.
      if (!(await this.deps.coordinator.acquire(key, holder, this.settings.leaseTtlMs))) return 'fresh';
      try {
        await this.singleFlight(key, () => this.fetchAndStore(service, key));
      } finally {
        await this.deps.coordinator.release(key, holder);
      }
      return 'refreshed';
    } catch (error) {
      this.deps.logger.warn('scheduled refresh failed', {
        serviceName: key.service,
        scope: key.scope,
        error,
      });
      return 'failed';
    }
  }

  /** Removes every cached token (and lease and cool-down) of the service. The service must exist (404 otherwise). */
  async clearTokens(name: string, call?: CallOptions): Promise<number> {
    const service = await this.deps.registry.get(name, call);
    if (!service) throw new NotFoundError(`service "${name}" does not exist`);
    return this.store.cache.clear(name, call);
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
      .finally(() => this.refreshing.delete(k));
    this.track(refresh);
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
   * `call` is the request's budget (none for a background refresh: it outlives the request).
   */
  private async obtain(
    service: ServiceRecord,
    key: CacheKey,
    mode: 'background',
    minTtlMs: number,
    call?: CallOptions,
  ): Promise<CachedToken | undefined>;
  private async obtain(
    service: ServiceRecord,
    key: CacheKey,
    mode: Mode,
    minTtlMs: number,
    call?: CallOptions,
  ): Promise<CachedToken>;
  private async obtain(
    service: ServiceRecord,
    key: CacheKey,
    mode: Mode,
    minTtlMs: number,
    call?: CallOptions,
  ): Promise<CachedToken | undefined> {
    await this.retries.assertNotCoolingDown(key, call);

    const holder = randomUUID();
    if (!(await this.store.coordinator.acquire(key, holder, this.settings.leaseTtlMs, call))) {
      // A background refresh leaves it to the holder: callers are being served the valid token meanwhile.
      if (mode === 'background') return undefined;
      // A forced refresh wants a token newer than any in flight: waiting for the holder's would not give one.
      if (mode === 'force') return this.fetchAndStore(service, key, call);
      const token = await this.waitForHolder(key, mode, minTtlMs, call);
      if (token) return token;
      this.metrics.count('LeaseWaitTimeouts');
      // The holder may have been refused meanwhile: pass its refusal on rather than asking Entra again.
      await this.retries.assertNotCoolingDown(key, call);
      return this.fetchAndStore(service, key, call);
    }
    try {
      // Another instance may have finished between our cache read and our lease.
      const fresh = await this.store.cache.get(key, call);
      if (this.satisfies(fresh, mode, minTtlMs)) return fresh;
      return await this.fetchAndStore(service, key, call);
    } finally {
      // With the request's signal: once its budget is spent, the lease is left to expire (leaseTtlMs).
      await this.store.coordinator.release(key, holder, call);
    }
  }

  /**
   * Polls the cache for the lease holder's token for up to the lease wait (never past the request's deadline);
   * undefined when none came.
   */
  private async waitForHolder(
    key: CacheKey,
    mode: Mode,
    minTtlMs: number,
    call?: CallOptions,
  ): Promise<CachedToken | undefined> {
    this.metrics.count('LeaseWaits');
    const deadline = Math.min(
      this.now() + this.settings.leaseWaitMs,
      call?.deadline ?? Number.POSITIVE_INFINITY,
    );
    while (this.now() < deadline && !call?.signal?.aborted) {
      await this.sleep(this.settings.leasePollMs);
      const token = await this.store.cache.get(key, call);
      if (this.satisfies(token, mode, minTtlMs)) return token;
      // DynamoDB trouble while waiting: the holder's token cannot reach us; stop waiting and fetch directly.
      if (this.store.failing) return undefined;
      // The holder was refused: its waiters get the refusal now, not after the whole wait.
      await this.retries.assertNotCoolingDown(key, call);
    }
    return undefined;
  }

  /** Asks Entra (with retries) and stores the token; a failed write leaves it in this process's memory. */
  private async fetchAndStore(
    service: ServiceRecord,
    key: CacheKey,
    call?: CallOptions,
  ): Promise<CachedToken> {
    const issued = await this.retries.request(
      key,
      (freshCredential) => this.grant.prepare(service, key.scope, { freshCredential, ...call }),
      call,
    );
    const token = this.cachedTokenOf(issued, key);
    await this.store.cache.put(key, token, call);
    return token;
  }

  /** The cache entry of an issued token: refreshed at Entra's refresh_in, else at a fraction of its lifetime. */
  private cachedTokenOf(issued: IssuedToken, key: CacheKey): CachedToken {
    const lifetimeMs = issued.expiresAt - issued.acquiredAt;
    const refreshAfterMs =
      issued.refreshIn !== undefined ? issued.refreshIn * 1000 : lifetimeMs * this.settings.refreshFraction;
    return {
      accessToken: issued.accessToken,
      scope: key.scope,
      acquiredAt: issued.acquiredAt,
      expiresAt: issued.expiresAt,
      refreshAt: issued.acquiredAt + refreshAfterMs,
    };
  }
}
