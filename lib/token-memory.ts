import { LRUCache } from 'lru-cache';
import type { CallOptions } from './call-options';
import type { GetTokenOptions, TokenResult } from './client-credentials-flow';
import { type MetricsSink, NO_METRICS } from './metrics';
import { isServable } from './token-cache';

/** What the memory tier sits in front of: the token flow (lib/client-credentials-flow.ts). */
export interface TokenSource {
  getToken(name: string, options?: GetTokenOptions): Promise<TokenResult>;
  clearTokens(name: string, call?: CallOptions): Promise<number>;
}

export interface TokenMemoryOptions {
  source: TokenSource;
  /**
   * The bound: a token is served from memory only while the read of DynamoDB that produced it started less than
   * this long ago. A change committed anywhere (a cleared cache, a new version of the service, a deleted or
   * switched-off service) therefore stops this instance serving the old token at most this long after it.
   * 0 turns the tier off.
   */
  boundMs?: number;
  /** From this age on, a request served from memory also starts one re-read in the background. */
  revalidateAfterMs?: number;
  /** At most this many (service, scope) entries are kept; the least recently used go first. */
  maxEntries?: number;
  metrics?: MetricsSink;
  now?: () => number;
}

/** The documented bound (README, "Performance"): at most 1 s. */
export const DEFAULT_MEMORY_BOUND_MS = 1000;

interface Entry {
  result: TokenResult;
  /** When the read that produced `result` started. */
  readAt: number;
}

interface Read {
  promise: Promise<TokenResult>;
  startedAt: number;
}

const keyOf = (name: string, scope: string | undefined): string => `${name}\u0000${scope ?? ''}`;

/**
 * A per-instance memory tier in front of the token flow, so that a cache hit costs no DynamoDB round trip:
 * - a token is served from memory while the DynamoDB read behind it started less than `boundMs` ago (and it is
 *   servable for the caller's min_ttl); past half of that, a request also starts one background re-read through
 *   the flow, so under steady traffic nobody waits and the flow still sees the traffic (refresh-ahead, last use);
 * - older than the bound, the next request reads through the flow (as without the tier) and waits for it;
 * - the re-read is the flow itself, so everything the flow refuses (a deleted, switched-off or changed service, a
 *   scope no longer configured) stops being served from memory once a re-read sees it: a re-read that fails drops
 *   the entry, and the next caller gets the flow's answer;
 * - an entry is only ever replaced by the result of a read that started later (never goes backwards), and clearing
 *   a service's tokens here drops its entries and ignores reads that started before the clear.
 * Forced refreshes (POST) and clears pass through.
 */
export class TokenMemory implements TokenSource {
  private readonly source: TokenSource;
  private readonly boundMs: number;
  private readonly revalidateAfterMs: number;
  private readonly metrics: MetricsSink;
  private readonly now: () => number;
  private readonly entries: LRUCache<string, Entry>;
  /** Plain reads under way, one per key, shared by the callers that wait for one. */
  private readonly reads = new Map<string, Read>();
  /** How many times each service's tokens were cleared here; a read that saw another count is not kept. */
  private readonly clears = new Map<string, number>();
  private readonly background = new Set<Promise<unknown>>();

  constructor(options: TokenMemoryOptions) {
    this.source = options.source;
    this.boundMs = options.boundMs ?? DEFAULT_MEMORY_BOUND_MS;
    this.revalidateAfterMs = options.revalidateAfterMs ?? this.boundMs / 2;
    this.metrics = options.metrics ?? NO_METRICS;
    this.now = options.now ?? Date.now;
    this.entries = new LRUCache({ max: options.maxEntries ?? 1000 });
  }

  /** Resolves once every background re-read started so far has finished (tests; graceful shutdown). */
  async settled(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /** A token for the service: from memory within the bound, otherwise from the flow. */
  async getToken(name: string, options: GetTokenOptions = {}): Promise<TokenResult> {
    if (this.boundMs <= 0) return this.source.getToken(name, options);
    const key = keyOf(name, options.scope);
    if (options.forceRefresh || options.minTtlSeconds !== undefined) {
      const remembered = options.forceRefresh ? undefined : this.fromMemory(key, options.minTtlSeconds);
      if (remembered) return remembered;
      // Not shared with plain reads: this caller's options decide what the flow does.
      return this.readThrough(name, key, options).promise;
    }
    const remembered = this.fromMemory(key, 0);
    if (remembered) return remembered;
    const running = this.reads.get(key);
    if (running && this.now() - running.startedAt < this.boundMs) return running.promise;
    return this.read(name, key, options.scope, { signal: options.signal, deadline: options.deadline })
      .promise;
  }

  /** Drops the service's entries here and clears its cached tokens (every instance stops within the bound). */
  async clearTokens(name: string, call?: CallOptions): Promise<number> {
    this.forget(name);
    try {
      return await this.source.clearTokens(name, call);
    } finally {
      // Reads that started while the clear ran may have seen the old items.
      this.forget(name);
    }
  }

  private forget(name: string): void {
    this.clears.set(name, (this.clears.get(name) ?? 0) + 1);
    const prefix = `${name}\u0000`;
    for (const key of [...this.entries.keys()]) if (key.startsWith(prefix)) this.entries.delete(key);
    for (const key of [...this.reads.keys()]) if (key.startsWith(prefix)) this.reads.delete(key);
  }

  /** The remembered result of `key` if it may be served now; starts a background re-read when it is getting old. */
  private fromMemory(key: string, minTtlSeconds: number | undefined): TokenResult | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    const now = this.now();
    const age = now - entry.readAt;
    const { token } = entry.result;
    if (age >= this.boundMs || age < 0) return undefined;
    if (!isServable(token, now) || token.expiresAt - now < (minTtlSeconds ?? 0) * 1000) return undefined;
    if (age >= this.revalidateAfterMs && !this.reads.has(key)) {
      const name = key.slice(0, key.indexOf('\u0000'));
      const scope = key.slice(key.indexOf('\u0000') + 1) || undefined;
      const revalidation = this.read(name, key, scope).promise.catch(() => undefined);
      this.background.add(revalidation);
      void revalidation.finally(() => this.background.delete(revalidation));
    }
    this.metrics.count('CacheHit');
    return { token, cache: 'hit' };
  }

  /**
   * One plain read of `key` through the flow, shared by whoever asks for the same key while it runs; bounded by
   * the budget of the request that started it (`call`; none for a background re-read).
   */
  private read(name: string, key: string, scope: string | undefined, call?: CallOptions): Read {
    const read = this.readThrough(name, key, { ...(scope === undefined ? {} : { scope }), ...call });
    this.reads.set(key, read);
    void read.promise
      .finally(() => {
        if (this.reads.get(key) === read) this.reads.delete(key);
      })
      .catch(() => undefined);
    return read;
  }

  /** Calls the flow; keeps its answer unless a newer read or a clear came first, and drops the entry on failure. */
  private readThrough(name: string, key: string, options: GetTokenOptions): Read {
    const startedAt = this.now();
    const clears = this.clears.get(name) ?? 0;
    const promise = this.source.getToken(name, options).then(
      (result) => {
        const current = this.entries.get(key);
        if ((this.clears.get(name) ?? 0) === clears && !(current && current.readAt > startedAt)) {
          this.entries.set(key, { result, readAt: startedAt });
        }
        return result;
      },
      (error: unknown) => {
        // Whatever the flow now refuses (or cannot answer) is not served from memory either.
        const current = this.entries.get(key);
        if (current && current.readAt <= startedAt) this.entries.delete(key);
        throw error;
      },
    );
    return { promise, startedAt };
  }
}
