import type { Logger } from '@aws-lambda-powertools/logger';
import type { CallOptions } from './call-options';
import type { PreparedRequest } from './client-credentials-grant';
import type { IssuedToken } from './entra-token-client';
import {
  DeadlineExceededError,
  IdentityProviderError,
  IdentityProviderTimeoutError,
  IdentityProviderUnavailableError,
} from './errors';
import type { MetricsSink } from './metrics';
import type { CoordinationState, RefreshCoordinator } from './refresh-coordinator';
import type { CacheKey } from './token-cache';
import { isoSeconds } from './token-response';

/** Tunables of the retry policy. */
export interface EntraRetrySettings {
  /** Entra time one request may take, retries and Retry-After waits included, unless the caller gives less. */
  retryBudgetMs: number;
  /** After Entra refuses a service (4xx error), callers get the refusal for this long without asking Entra. */
  cooldownMs: number;
}

export interface EntraRetryPolicyOptions {
  /** Where cool-downs and throttles are shared between instances (store failures already absorbed by it). */
  coordinator: RefreshCoordinator;
  logger: Logger;
  metrics: MetricsSink;
  settings: EntraRetrySettings;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  random: () => number;
}

/** Most Entra requests one token request makes, retries included (a zero Retry-After must not make it spin). */
export const MAX_ENTRA_ATTEMPTS = 5;
/**
 * A step that took this much longer than it possibly could (its own timeout or wait) means the process was frozen
 * meanwhile (Lambda between invocations): the budget then starts afresh instead of having been spent asleep.
 */
const FREEZE_SLACK_MS = 5_000;

/**
 * How the broker treats Entra when it fails: 5xx, timeouts and resets are retried with full-jitter backoff, 429
 * and 503 after their Retry-After (never sooner than the backoff), at most {@link MAX_ENTRA_ATTEMPTS} requests
 * within one budget; invalid_client re-reads the credential once (it may just have been rotated). What the
 * instances must all respect is shared through the coordinator: a refusal (4xx) as a cool-down, and a
 * Retry-After longer than the budget as a throttle, so that no instance asks Entra for the service before it ends.
 */
export class EntraRetryPolicy {
  private readonly options: EntraRetryPolicyOptions;

  constructor(options: EntraRetryPolicyOptions) {
    this.options = options;
  }

  /**
   * Throws what callers must be told instead of asking Entra: the remembered refusal during a cool-down (502), or
   * 503 with the remaining Retry-After while Entra's throttle lasts.
   */
  assertMayAsk(state: CoordinationState): void {
    if (state.cooldown) {
      this.options.metrics.count('CooldownRefusals');
      throw new IdentityProviderError(state.cooldown.message, {
        context: { ...state.cooldown.context, cooldown_until: isoSeconds(state.cooldown.until) },
      });
    }
    if (state.throttledUntil !== undefined) {
      this.options.metrics.count('CooldownRefusals');
      const retryAfterSeconds = Math.max(1, Math.ceil((state.throttledUntil - this.options.now()) / 1000));
      throw new IdentityProviderUnavailableError(
        `identity provider asked for a pause; retry after ${retryAfterSeconds} s`,
        { retryAfterSeconds, context: { throttled_until: isoSeconds(state.throttledUntil) } },
      );
    }
  }

  /**
   * Sends the request `prepare` builds, retrying within `budgetMs` (the settings' retry budget by default);
   * `prepare(true)` must re-read the credential. Throws the last error when the budget or the attempts are spent,
   * or the error is not worth retrying. The budget never reaches past the request's own (`call`): once that is
   * spent, Entra is not asked (DeadlineExceededError).
   */
  async request(
    key: CacheKey,
    prepare: (freshCredential: boolean) => Promise<PreparedRequest>,
    call: CallOptions & { budgetMs?: number } = {},
  ): Promise<IssuedToken> {
    const { metrics, logger, now } = this.options;
    const budgetMs = call.budgetMs ?? this.options.settings.retryBudgetMs;
    const within = (from: number) => Math.min(from + budgetMs, call.deadline ?? Number.POSITIVE_INFINITY);
    let deadline = within(now());
    let rereadSecret = false;
    for (let attempt = 0; ; attempt++) {
      if (now() >= deadline || call.signal?.aborted) {
        throw new DeadlineExceededError(
          'the request ran out of time before the identity provider could be asked',
        );
      }
      const send = await prepare(rereadSecret && attempt > 0);
      const started = now();
      const timeoutMs = Math.max(1, deadline - started);
      try {
        metrics.count('EntraRequests');
        const issued = await send(timeoutMs, call.signal);
        metrics.milliseconds('EntraLatency', now() - started);
        return issued;
      } catch (error) {
        metrics.count('EntraFailures');
        if (now() - started > timeoutMs + FREEZE_SLACK_MS) deadline = this.afterFreeze(key, within);
        const wait = this.retryDelay(error, attempt, rereadSecret);
        if (wait === 'reread-secret') {
          rereadSecret = true;
          continue;
        }
        if (wait === undefined || attempt + 1 >= MAX_ENTRA_ATTEMPTS || now() + wait >= deadline) {
          await this.rememberForEveryone(key, error, call);
          throw error;
        }
        metrics.count('EntraRetries');
        logger.info('retrying Entra', { serviceName: key.service, attempt: attempt + 1, waitMs: wait });
        const sleptFrom = now();
        await this.options.sleep(wait);
        if (now() - sleptFrom > wait + FREEZE_SLACK_MS) deadline = this.afterFreeze(key, within);
      }
    }
  }

  /** The new deadline after a freeze: the budget again from now (a request's own deadline still stands). */
  private afterFreeze(key: CacheKey, within: (from: number) => number): number {
    this.options.logger.info('process was frozen during an Entra request; its budget starts afresh', {
      serviceName: key.service,
    });
    return within(this.options.now());
  }

  /**
   * Shares what the failure means for every instance: Entra's considered refusal (a 4xx with an OAuth error code)
   * starts the cool-down; a Retry-After that the budget could not wait out becomes the service's throttle.
   */
  private async rememberForEveryone(key: CacheKey, error: unknown, call: CallOptions): Promise<void> {
    const { coordinator, now, settings } = this.options;
    const options = { signal: call.signal, deadline: call.deadline };
    if (error instanceof IdentityProviderUnavailableError && (error.retryAfterSeconds ?? 0) > 0) {
      await coordinator.throttle(key, now() + (error.retryAfterSeconds as number) * 1000, options);
      return;
    }
    if (!(error instanceof IdentityProviderError) || error.retryable) return;
    if (typeof error.context?.error !== 'string') return;
    await coordinator.coolDown(
      key,
      now() + settings.cooldownMs,
      { message: error.message, context: error.context },
      options,
    );
  }

  /** Full-jitter exponential backoff: a random delay up to 200 ms × 2^attempt, at most 2 s. */
  private backoff(attempt: number): number {
    return Math.floor(this.options.random() * Math.min(2000, 200 * 2 ** attempt));
  }

  /** How long to wait before the next attempt; undefined when the error is not worth retrying. */
  private retryDelay(
    error: unknown,
    attempt: number,
    rereadSecret: boolean,
  ): number | 'reread-secret' | undefined {
    if (error instanceof IdentityProviderUnavailableError) {
      // Retry-After: 0 or a date in the past must not make the loop spin.
      return Math.max((error.retryAfterSeconds ?? 0) * 1000, this.backoff(attempt));
    }
    if (error instanceof IdentityProviderTimeoutError) return this.backoff(attempt);
    if (error instanceof IdentityProviderError) {
      if (error.retryable) return this.backoff(attempt);
      if (error.context?.error === 'invalid_client' && !rereadSecret) return 'reread-secret';
    }
    return undefined;
  }
}
