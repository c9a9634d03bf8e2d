import type { CallOptions } from './call-options';
import type { EntraRetryPolicy } from './entra-retry-policy';
import { DeadlineExceededError, IdentityProviderUnavailableError } from './errors';
import type { MetricsSink } from './metrics';
import type { CoordinationState, RefreshCoordinator } from './refresh-coordinator';
import type { CachedToken, CacheKey, TokenCache } from './token-cache';

export interface LeaseFollowerOptions {
  coordinator: RefreshCoordinator;
  cache: TokenCache;
  /** Turns a recorded refusal or throttle into the caller's error. */
  retries: Pick<EntraRetryPolicy, 'assertMayAsk'>;
  metrics: MetricsSink;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  /** Poll interval. */
  pollMs: number;
}

/**
 * How an instance that did not get the refresh lease waits for the one that did: it follows the holder (the lease
 * item) rather than a fixed wait, so that a slow Entra, or a holder waiting out Retry-After, does not make every
 * waiter ask Entra too.
 */
export class LeaseFollower {
  private readonly options: LeaseFollowerOptions;

  constructor(options: LeaseFollowerOptions) {
    this.options = options;
  }

  /**
   * Polls until the holder's token is in the cache and `accept`ed (returned), the holder gave up (undefined: lease
   * released or expired without a token), or it was refused or throttled (that error is thrown). At `deadline`
   * with the holder still at work the caller gets 503 (504 when the request's own deadline has come): a second
   * Entra request would only add load.
   */
  async follow(
    key: CacheKey,
    accept: (token: CachedToken | undefined) => token is CachedToken,
    deadline: number,
    call?: CallOptions,
  ): Promise<CachedToken | undefined> {
    const { coordinator, cache, retries, metrics, now, sleep, pollMs } = this.options;
    metrics.count('LeaseWaits');
    for (;;) {
      await sleep(pollMs);
      if (call?.signal?.aborted) {
        throw new DeadlineExceededError('the request ran out of time while another instance asked Entra');
      }
      // The lease before the token: a holder that wrote its token and then released is never taken for gone.
      const state: CoordinationState = await coordinator.state(key, call);
      const token = await cache.get(key, call);
      if (accept(token)) return token;
      retries.assertMayAsk(state);
      if (!state.lease) return undefined;
      if (now() >= deadline) {
        // The request's own budget is spent (504); or it has waited all it may for the holder (503).
        if (call?.deadline !== undefined && now() >= call.deadline) {
          throw new DeadlineExceededError('the request ran out of time while another instance asked Entra');
        }
        const retryAfterSeconds = Math.max(1, Math.ceil((state.lease.expiresAt - now()) / 1000));
        throw new IdentityProviderUnavailableError(
          'another instance is still asking the identity provider for this token; retry shortly',
          { retryAfterSeconds },
        );
      }
    }
  }
}
