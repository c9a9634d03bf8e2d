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
import type { RefreshCoordinator } from './refresh-coordinator';
import type { CacheKey } from './token-cache';
import { isoSeconds } from './token-response';

/** Tunables of the retry policy. */
export interface EntraRetrySettings {
  /** Total time one token request may spend on Entra, retries and Retry-After waits included. */
  retryBudgetMs: number;
  /** After Entra refuses a service (4xx error), callers get the refusal for this long without asking Entra. */
  cooldownMs: number;
}

export interface EntraRetryPolicyOptions {
  /** Where cool-downs are shared between instances (a store failure must already be absorbed by it). */
  coordinator: RefreshCoordinator;
  logger: Logger;
  metrics: MetricsSink;
  settings: EntraRetrySettings;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  random: () => number;
}

/**
 * How the broker treats Entra when it fails: 5xx, timeouts and resets are retried with full-jitter backoff, 429
 * and 503 after their Retry-After, all within one budget; invalid_client re-reads the credential once (it may just
 * have been rotated); a refusal (4xx) is remembered as a cool-down shared by every instance, so that a broken
 * service does not send every call to Entra.
 */
export class EntraRetryPolicy {
  private readonly options: EntraRetryPolicyOptions;

  constructor(options: EntraRetryPolicyOptions) {
    this.options = options;
  }

  /** Throws the remembered refusal while `key` is cooling down after Entra refused it. */
  async assertNotCoolingDown(key: CacheKey, call?: CallOptions): Promise<void> {
    const cooldown = await this.options.coordinator.coolingDown(key, call);
    if (!cooldown) return;
    this.options.metrics.count('CooldownRefusals');
    throw new IdentityProviderError(cooldown.message, {
      context: { ...cooldown.context, cooldown_until: isoSeconds(cooldown.until) },
    });
  }

  /**
   * Sends the request `prepare` builds, retrying within the budget; `prepare(true)` must re-read the credential.
   * Throws the last error when the budget is spent or the error is not worth retrying. The retry budget never
   * reaches past the request's own (`call`): once that is spent, Entra is not asked (DeadlineExceededError).
   */
  async request(
    key: CacheKey,
    prepare: (freshCredential: boolean) => Promise<PreparedRequest>,
    call?: CallOptions,
  ): Promise<IssuedToken> {
    const { metrics, logger, now, settings } = this.options;
    const deadline = Math.min(now() + settings.retryBudgetMs, call?.deadline ?? Number.POSITIVE_INFINITY);
    let rereadSecret = false;
    for (let attempt = 0; ; attempt++) {
      if (now() >= deadline || call?.signal?.aborted) {
        throw new DeadlineExceededError(
          'the request ran out of time before the identity provider could be asked',
        );
      }
      const send = await prepare(rereadSecret && attempt > 0);
      const started = now();
      try {
        metrics.count('EntraRequests');
        const issued = await send(Math.max(1, deadline - started), call?.signal);
        metrics.milliseconds('EntraLatency', now() - started);
        return issued;
      } catch (error) {
        metrics.count('EntraFailures');
        const wait = this.retryDelay(error, attempt, rereadSecret);
        if (wait === 'reread-secret') {
          rereadSecret = true;
          continue;
        }
        if (wait === undefined || now() + wait >= deadline) {
          await this.coolDownAfterRefusal(key, error, call);
          throw error;
        }
        metrics.count('EntraRetries');
        logger.info('retrying Entra', { serviceName: key.service, attempt: attempt + 1, waitMs: wait });
        await this.options.sleep(wait);
      }
    }
  }

  /** Remembers Entra's considered refusal (a 4xx with an OAuth error code) for the cool-down. */
  private async coolDownAfterRefusal(key: CacheKey, error: unknown, call?: CallOptions): Promise<void> {
    if (!(error instanceof IdentityProviderError) || error.retryable) return;
    if (typeof error.context?.error !== 'string') return;
    await this.options.coordinator.coolDown(
      key,
      this.options.now() + this.options.settings.cooldownMs,
      { message: error.message, context: error.context },
      call,
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
      return error.retryAfterSeconds !== undefined ? error.retryAfterSeconds * 1000 : this.backoff(attempt);
    }
    if (error instanceof IdentityProviderTimeoutError) return this.backoff(attempt);
    if (error instanceof IdentityProviderError) {
      if (error.retryable) return this.backoff(attempt);
      if (error.context?.error === 'invalid_client' && !rereadSecret) return 'reread-secret';
    }
    return undefined;
  }
}
