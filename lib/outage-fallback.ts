import type { Logger } from '@aws-lambda-powertools/logger';
import { LRUCache } from 'lru-cache';
import { StoreError } from './errors';
import type { MetricsSink } from './metrics';
import type { CooldownError, RefreshCoordinator } from './refresh-coordinator';
import type { ServiceRecord } from './service-config';
import type { ServiceRegistry } from './service-registry';
import {
  type CachedToken,
  type CacheKey,
  isServable,
  type TokenCache,
  type TokenLookup,
} from './token-cache';

export interface OutageFallbackOptions {
  registry: ServiceRegistry;
  cache: TokenCache;
  coordinator: RefreshCoordinator;
  logger: Logger;
  metrics: MetricsSink;
  now: () => number;
  /** At most this many services and this many tokens are remembered (least recently used go first). */
  maxEntries?: number;
  /** A remembered service record is used for at most this long after it was read; default 5 minutes. */
  maxServiceAgeMs?: number;
}

/** Default of {@link OutageFallbackOptions.maxServiceAgeMs}: an outage longer than this fails requests. */
export const MAX_REMEMBERED_SERVICE_AGE_MS = 5 * 60_000;

const keyString = (key: CacheKey): string => `${key.service}\u0000${key.version}\u0000${key.scope}`;

/**
 * What a warm instance does while DynamoDB fails: it keeps serving what it last knew. One decorator over the
 * service registry, the token cache and the refresh coordinator, whose views answer like the stores they wrap
 * except that a StoreError is absorbed:
 * - a service read falls back to the last record this instance read, for at most 5 minutes after that read
 *   (none known: the error stands); a read that finds the service missing or inactive forgets it and its
 *   tokens, so a deleted (or switched-off) service stays that way on this instance during an outage;
 * - a token read falls back to the last token this instance read, fetched or wrote, while it is servable;
 * - a token write is skipped (the token stays in memory), as are a lease release and coordination reads and
 *   writes (a failed read sees no lease, cool-down or throttle);
 * - a lease write counts as won: in-process single flight is all the coordination left.
 * Every absorbed failure is logged and counted (`StoreDegraded`). Clearing a service's tokens and every admin
 * write still fail loudly.
 */
export class OutageFallback {
  readonly registry: ServiceRegistry;
  readonly cache: TokenCache;
  readonly coordinator: RefreshCoordinator;
  private readonly options: OutageFallbackOptions;
  private readonly services: LRUCache<string, ServiceRecord>;
  private readonly tokens: LRUCache<string, CachedToken>;

  constructor(options: OutageFallbackOptions) {
    this.options = options;
    const max = options.maxEntries ?? 1000;
    this.services = new LRUCache({
      max,
      ttl: options.maxServiceAgeMs ?? MAX_REMEMBERED_SERVICE_AGE_MS,
      // The injected clock, checked on every read: the age limit is testable with a fixed clock.
      perf: { now: options.now },
      ttlResolution: 0,
    });
    this.tokens = new LRUCache({ max });
    this.registry = this.registryView(options.registry);
    this.cache = this.cacheView(options.cache);
    this.coordinator = this.coordinatorView(options.coordinator);
  }

  /** Runs a store call; on a StoreError logs and counts the degradation and returns `fallback()` instead. */
  private async degradable<T>(operation: string, call: () => Promise<T>, fallback: () => T): Promise<T> {
    try {
      return await call();
    } catch (error) {
      this.absorb(operation, error);
      return fallback();
    }
  }

  /** Rethrows anything but a StoreError; logs and counts a StoreError, which the caller then absorbs. */
  private absorb(operation: string, error: unknown): void {
    if (!(error instanceof StoreError)) throw error;
    this.options.metrics.count('StoreDegraded');
    this.options.logger.warn('store unavailable, degrading', { operation, error });
  }

  /** The remembered token of `key` while it may still be handed out. */
  private remembered(key: CacheKey): CachedToken | undefined {
    const token = this.tokens.get(keyString(key));
    return token && isServable(token, this.options.now()) ? token : undefined;
  }

  private remember(key: CacheKey, token: CachedToken | undefined): CachedToken | undefined {
    if (token) this.tokens.set(keyString(key), token);
    return token;
  }

  /** Forgets the service and every token of it (all versions and scopes). */
  private forget(service: string): void {
    this.services.delete(service);
    for (const k of [...this.tokens.keys()]) if (k.startsWith(`${service}\u0000`)) this.tokens.delete(k);
  }

  private registryView(inner: ServiceRegistry): ServiceRegistry {
    return {
      get: async (name, call) => {
        try {
          const service = await inner.get(name, call);
          if (service?.is_active) this.services.set(name, service);
          else this.forget(name);
          return service;
        } catch (error) {
          // Nothing remembered to fall back on: the failure stands.
          const known = this.services.get(name);
          if (!known) throw error;
          this.absorb('services table read', error);
          return known;
        }
      },
      create: (record, call) => inner.create(record, call),
      replace: (record, expectedVersion, call) => inner.replace(record, expectedVersion, call),
      delete: (name, expectedVersion, call) => inner.delete(name, expectedVersion, call),
      list: (call) => inner.list(call),
    };
  }

  private cacheView(inner: TokenCache): TokenCache {
    const lookupOf = (found: TokenLookup | undefined): TokenLookup => ({
      get: async (key) =>
        found
          ? this.remember(
              key,
              await this.degradable(
                'token cache read',
                () => found.get(key),
                () => this.remembered(key),
              ),
            )
          : this.remembered(key),
    });
    return {
      get: async (key, call) =>
        this.remember(
          key,
          await this.degradable(
            'token cache read',
            () => inner.get(key, call),
            () => this.remembered(key),
          ),
        ),
      lookup: async (service, call) =>
        lookupOf(
          await this.degradable(
            'token cache read',
            () => inner.lookup(service, call),
            () => undefined,
          ),
        ),
      put: async (key, token, call) => {
        // Refused (a newer token is stored, or the cache was cleared since): not this instance's to remember.
        const written = await this.degradable(
          'token cache write',
          () => inner.put(key, token, call),
          () => true,
        );
        if (written) this.remember(key, token);
        return written;
      },
      touch: (key, at, call) => inner.touch(key, at, call),
      clear: async (service, options) => {
        for (const k of [...this.tokens.keys()]) if (k.startsWith(`${service}\u0000`)) this.tokens.delete(k);
        return inner.clear(service, options);
      },
    };
  }

  private coordinatorView(inner: RefreshCoordinator): RefreshCoordinator {
    return {
      acquire: (key, holder, ttlMs, call) =>
        this.degradable(
          'lease write',
          () => inner.acquire(key, holder, ttlMs, call),
          () => true,
        ),
      release: (key, holder, call) =>
        this.degradable(
          'lease release',
          () => inner.release(key, holder, call),
          () => undefined,
        ),
      coolDown: (key, until, error: CooldownError, call) =>
        this.degradable(
          'cool-down write',
          () => inner.coolDown(key, until, error, call),
          () => undefined,
        ),
      throttle: (key, until, call) =>
        this.degradable(
          'throttle write',
          () => inner.throttle(key, until, call),
          () => undefined,
        ),
      state: (key, call) =>
        this.degradable(
          'coordination read',
          () => inner.state(key, call),
          () => ({}),
        ),
    };
  }
}
