import { randomUUID } from 'node:crypto';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { AuthorityPolicy } from './authority';
import type { CallOptions } from './call-options';
import {
  ClientCredentialsGrant,
  type TokenEndpointClient,
  type TokenGrant,
} from './client-credentials-grant';
import type { CredentialSources } from './credentials/service-credential';
import { EntraRetryPolicy } from './entra-retry-policy';
import { NotFoundError, ServiceInactiveError, ValidationError } from './errors';
import { DEFAULT_FLOW_SETTINGS, type FlowSettings } from './flow-settings';
import { LeaseFollower } from './lease-follower';
import { type MetricsSink, NO_METRICS } from './metrics';
import { OutageFallback } from './outage-fallback';
import type { RefreshCoordinator } from './refresh-coordinator';
import { SecretCache } from './secret-cache';
import type { SecretStore } from './secret-store';
import { type ServiceRecord, scopesOf } from './service-config';
import type { ServiceRegistry } from './service-registry';
import { type CachedToken, type CacheKey, cachedTokenOf, type TokenCache } from './token-cache';

/** How a token request was served, for logs and metrics. */
export type CacheOutcome = 'hit' | 'miss' | 'refresh';

/** A served token and how it was served; the HTTP layer shapes the response (lib/token-response.ts). */
export interface TokenResult {
  token: CachedToken;
  cache: CacheOutcome;
}

// Re-exported: the CDK construct sizes the token function from these defaults.
export { DEFAULT_FLOW_SETTINGS, type FlowSettings } from './flow-settings';

export interface ClientCredentialsFlowDependencies {
  registry: ServiceRegistry;
  cache: TokenCache;
  coordinator: RefreshCoordinator;
  secrets: SecretStore;
  entra: TokenEndpointClient;
  authority: AuthorityPolicy;
  /** Where federated credentials get their tokens (see lib/credentials/service-credential.ts). */
  credentialSources?: CredentialSources;
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

/** What the scheduled refresh did for one scope of a service (lib/scheduled-refresh.ts). */
export type ScheduledOutcome = 'refreshed' | 'fresh' | 'unused' | 'not-cached' | 'failed' | 'skipped';

/**
 * DreamFactory's client credentials flow on AWS, built to ask Entra as rarely as possible. This class only
 * orchestrates; each policy is its own module:
 * - tokens are served from the DynamoDB cache while they have more than 60 s (or the caller's min_ttl) left;
 * - past a token's refresh point, one background refresh runs while callers keep getting the valid token;
 * - when many instances miss at once, a lease (lib/refresh-coordinator.ts) lets one ask Entra and the others
 *   follow it until its token arrives (lib/lease-follower.ts);
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
  private readonly follower: LeaseFollower;
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
      sources: deps.credentialSources,
    });
    this.retries = new EntraRetryPolicy({
      coordinator: this.store.coordinator,
      logger: deps.logger,
      metrics: this.metrics,
      settings: { retryBudgetMs: this.settings.retryBudgetMs, cooldownMs: this.settings.cooldownMs },
      now: this.now,
      sleep: this.sleep,
      random: deps.random ?? Math.random,
    });
    this.follower = new LeaseFollower({
      coordinator: this.store.coordinator,
      cache: this.store.cache,
      retries: this.retries,
      metrics: this.metrics,
      now: this.now,
      sleep: this.sleep,
      pollMs: this.settings.leasePollMs,
    });
  }

  /** Resolves once every background refresh started so far has finished (tests; graceful shutdown). */
  async settled(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /** Looks the service up and checks that it may use this flow; NotFound, Inactive or GrantNotEnabled otherwise. */
  async usableService(name: string, call?: CallOptions): Promise<ServiceRecord> {
    const service = await this.store.registry.get(name, call);
    if (!service) throw new NotFoundError(`service "${name}" does not exist`);
    if (!service.is_active) throw new ServiceInactiveError(`service "${name}" is not active`);
    this.grant.assertAllowed(service);
    return service;
  }

  /** Returns a token for the service: from the cache (GET) or freshly from Entra (forced, or nothing usable cached). */
  async getToken(name: string, options: GetTokenOptions = {}): Promise<TokenResult> {
    // The service's cached items are read at the same time as the service itself: a hit costs one round trip.
    const call: CallOptions = { signal: options.signal, deadline: options.deadline };
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
    // One deadline for the whole request: waiting for another instance, then asking Entra (see leaseWaitMs),
    // never past the request's own.
    const deadline = Math.min(
      this.now() + this.settings.retryBudgetMs + this.settings.leaseWaitMs,
      options.deadline ?? Number.POSITIVE_INFINITY,
    );
    // Only a background refresh leaves the token to another holder (undefined); a request always gets one.
    const token = await this.singleFlight(
      key,
      async () => (await this.obtain(service, key, mode, minTtlMs, deadline, call)) as CachedToken,
    );
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
   * Refreshes one key for the scheduled refresh (lib/scheduled-refresh.ts) under the same lease as request-driven
   * refreshes, within `budgetMs` of Entra time, unless it no longer reaches its refresh point within `horizonMs`
   * once the lease is taken. Never throws: a failure is logged and reported as 'failed'.
   */
  async refreshScheduled(
    service: ServiceRecord,
    key: CacheKey,
    horizonMs: number,
    budgetMs = this.settings.retryBudgetMs,
  ): Promise<ScheduledOutcome> {
    const holder = randomUUID();
    try {
      this.retries.assertMayAsk(await this.deps.coordinator.state(key));
      // If an instance is refreshing right now, leave it to that instance.
      if (!(await this.deps.coordinator.acquire(key, holder, this.settings.leaseTtlMs))) return 'fresh';
      try {
        // Read again under the lease: another run or instance may have refreshed it (or been refused or
        // throttled) since the plan was made.
        const [current, state] = await Promise.all([
          this.deps.cache.get(key),
          this.deps.coordinator.state(key),
        ]);
        if (current && current.refreshAt > this.now() + horizonMs) return 'fresh';
        this.retries.assertMayAsk(state);
        await this.singleFlight(key, () => this.fetchAndStore(service, key, { budgetMs }));
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

  /**
   * Removes every cached token of the service (404 when it does not exist). A refresh that asked Entra before the
   * clear cannot refill the current scopes afterwards; leases, cool-downs and throttles stay, so clearing cannot
   * lift a cool-down or a throttle.
   */
  async clearTokens(name: string, call?: CallOptions): Promise<number> {
    const service = await this.deps.registry.get(name, call);
    if (!service) throw new NotFoundError(`service "${name}" does not exist`);
    const keys = scopesOf(service.config).map((scope) => ({
      service: name,
      version: service.version,
      scope,
    }));
    return this.store.cache.clear(name, { ...call, clearedAt: this.now(), keys });
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
    // Its own deadline, not the triggering request's: it may outlive that request's invocation.
    const refresh = this.obtain(service, key, 'background', 0, this.now() + this.settings.retryBudgetMs)
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
   * Gets a token from Entra under the cross-instance lease, by `deadline`. Without the lease, a request follows the
   * holder until its token arrives, and takes over when the holder gave up; a background refresh simply leaves it
   * to the holder; a forced refresh asks Entra itself (waiting would not give it a newer token).
   */
  private async obtain(
    service: ServiceRecord,
    key: CacheKey,
    mode: Mode,
    minTtlMs: number,
    deadline: number,
    call?: CallOptions,
  ): Promise<CachedToken | undefined> {
    const budget = () => ({
      budgetMs: Math.min(this.settings.retryBudgetMs, deadline - this.now()),
      lastUsedAt: this.now(),
    });
    for (;;) {
      this.retries.assertMayAsk(await this.store.coordinator.state(key, call));
      const holder = randomUUID();
      if (await this.store.coordinator.acquire(key, holder, this.settings.leaseTtlMs, call)) {
        try {
          // Read again under the lease: the previous holder may have cached a token, or been refused or
          // throttled (it records that before it releases the lease), since our first reads.
          const [fresh, state] = await Promise.all([
            this.store.cache.get(key, call),
            this.store.coordinator.state(key, call),
          ]);
          if (this.satisfies(fresh, mode, minTtlMs)) return fresh;
          this.retries.assertMayAsk(state);
          return await this.fetchAndStore(service, key, budget(), call);
        } finally {
          // With the request's signal: once its budget is spent, the lease is left to expire (leaseTtlMs).
          await this.store.coordinator.release(key, holder, call);
        }
      }
      // A background refresh leaves it to the holder: callers are being served the valid token meanwhile.
      if (mode === 'background') return undefined;
      if (mode === 'force') return this.fetchAndStore(service, key, budget(), call);
      const accept = (t: CachedToken | undefined): t is CachedToken => this.satisfies(t, mode, minTtlMs);
      const token = await this.follower.follow(key, accept, deadline, call);
      if (token) return token;
      // The holder gave up without a token (and without a refusal or throttle): take over, if time is left.
      this.metrics.count('LeaseWaitTimeouts');
    }
  }

  /**
   * Asks Entra (with retries, within `budgetMs`) and stores the token. The write never replaces a newer token nor
   * refills a cache cleared since; the caller gets the token it asked for either way. `lastUsedAt` is set when a
   * caller is being served; a scheduled refresh leaves it as it was.
   */
  private async fetchAndStore(
    service: ServiceRecord,
    key: CacheKey,
    options: { budgetMs: number; lastUsedAt?: number },
    call?: CallOptions,
  ): Promise<CachedToken> {
    const issued = await this.retries.request(
      key,
      (freshCredential) => this.grant.prepare(service, key.scope, { freshCredential, ...call }),
      { ...call, budgetMs: options.budgetMs },
    );
    const token = {
      ...cachedTokenOf(issued, key.scope, this.settings.refreshFraction),
      lastUsedAt: options.lastUsedAt,
    };
    if (!(await this.store.cache.put(key, token, call))) {
      this.deps.logger.info(
        'token not cached: a newer one is, or the cache was cleared since it was asked for',
        {
          serviceName: key.service,
          scope: key.scope,
        },
      );
    }
    return token;
  }
}
