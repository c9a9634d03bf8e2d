import type { PreparedRequest } from '../../lib/client-credentials-grant';
import { EntraRetryPolicy, MAX_ENTRA_ATTEMPTS } from '../../lib/entra-retry-policy';
import type { IssuedToken } from '../../lib/entra-token-client';
import {
  IdentityProviderError,
  IdentityProviderTimeoutError,
  IdentityProviderUnavailableError,
} from '../../lib/errors';
import { NO_METRICS } from '../../lib/metrics';
import { ManualClock } from '../fixtures/clock';
import { InMemoryRefreshCoordinator, silentLogger } from '../fixtures/in-memory';

/** The retry, backoff, cool-down and throttle policy, driven by scripted Entra outcomes on a manual clock. */
const KEY = { service: 'svc', version: 'v1', scope: 'https://graph.microsoft.com/.default' };
const BUDGET_MS = 5000;

function setup(random = 0.5) {
  const clock = new ManualClock();
  const coordinator = new InMemoryRefreshCoordinator(clock.now);
  const waits: number[] = [];
  const policy = new EntraRetryPolicy({
    coordinator,
    logger: silentLogger(),
    metrics: NO_METRICS,
    settings: { retryBudgetMs: BUDGET_MS, cooldownMs: 30_000 },
    now: clock.now,
    random: () => random,
    sleep: async (ms) => {
      waits.push(ms);
      clock.advance(ms);
    },
  });
  /** Requests answered in turn by `outcomes` (an error is thrown; anything else is a token); records each send. */
  const script = (...outcomes: Array<Error | 'token' | ((timeoutMs: number) => Promise<never>)>) => {
    const sent: Array<{ freshCredential: boolean; timeoutMs: number }> = [];
    const prepare =
      async (freshCredential: boolean): Promise<PreparedRequest> =>
      async (timeoutMs) => {
        sent.push({ freshCredential, timeoutMs });
        const outcome = outcomes.shift() ?? 'token';
        if (typeof outcome === 'function') return outcome(timeoutMs);
        if (outcome instanceof Error) throw outcome;
        return {
          accessToken: 'tok',
          tokenType: 'Bearer',
          expiresIn: 3600,
          acquiredAt: 0,
          expiresAt: 1,
        } as IssuedToken;
      };
    return { sent, prepare };
  };
  return { clock, coordinator, waits, policy, script };
}

const serverError = () => new IdentityProviderError('HTTP 500', { retryable: true });
const throttled = (seconds?: number) =>
  new IdentityProviderUnavailableError('throttled', { retryAfterSeconds: seconds });
const refused = (error: string) => new IdentityProviderError(`${error}: no`, { context: { error } });

describe('EntraRetryPolicy', () => {
  it('backs off with full jitter: a random share of 200 ms × 2^attempt, at most 2 s', async () => {
    const { policy, script, waits } = setup(1);
    const { prepare } = script(serverError(), serverError(), serverError(), serverError());
    await policy.request(KEY, prepare, { budgetMs: 60_000 });
    expect(waits).toEqual([200, 400, 800, 1600]);
  });

  it(`makes at most ${MAX_ENTRA_ATTEMPTS} requests, whatever the budget`, async () => {
    const { policy, script } = setup();
    const { prepare, sent } = script(...Array.from({ length: 20 }, serverError));
    await expect(policy.request(KEY, prepare, { budgetMs: 600_000 })).rejects.toBeInstanceOf(
      IdentityProviderError,
    );
    expect(sent).toHaveLength(MAX_ENTRA_ATTEMPTS);
  });

  it('waits at least the backoff when Retry-After is 0', async () => {
    const { policy, script, waits } = setup();
    const { prepare } = script(throttled(0), throttled(0), 'token');
    await policy.request(KEY, prepare, { budgetMs: BUDGET_MS });
    expect(waits).toEqual([100, 200]);
  });

  it('waits out a Retry-After that fits the budget and records no throttle', async () => {
    const { policy, script, waits, coordinator } = setup();
    const { prepare } = script(throttled(2), 'token');
    await policy.request(KEY, prepare, { budgetMs: BUDGET_MS });
    expect(waits).toEqual([2000]);
    expect(coordinator.throttles.size).toBe(0);
  });

  it('gives up at once on a Retry-After longer than the budget and shares it as a throttle', async () => {
    const { policy, script, waits, coordinator, clock } = setup();
    const { prepare } = script(throttled(60));
    await expect(policy.request(KEY, prepare, { budgetMs: BUDGET_MS })).rejects.toBeInstanceOf(
      IdentityProviderUnavailableError,
    );
    expect(waits).toEqual([]);
    expect((await coordinator.state(KEY)).throttledUntil).toBe(clock.now() + 60_000);
  });

  it('re-reads the credential once after invalid_client, then cools the key down when refused again', async () => {
    const { policy, script, coordinator } = setup();
    const { prepare, sent } = script(refused('invalid_client'), refused('invalid_client'));
    await expect(policy.request(KEY, prepare, { budgetMs: BUDGET_MS })).rejects.toBeInstanceOf(
      IdentityProviderError,
    );
    expect(sent.map((s) => s.freshCredential)).toEqual([false, true]);
    expect((await coordinator.state(KEY)).cooldown?.message).toBe('invalid_client: no');
  });

  it('does not cool down after failures worth retrying', async () => {
    const { policy, script, coordinator } = setup();
    const { prepare } = script(...Array.from({ length: 5 }, serverError));
    await expect(policy.request(KEY, prepare, { budgetMs: BUDGET_MS })).rejects.toBeInstanceOf(
      IdentityProviderError,
    );
    expect(coordinator.cooldowns.size).toBe(0);
  });

  it('starts its budget afresh after the process was frozen during a request, instead of giving up', async () => {
    // Prepare: the first request times out, but by the clock it "took" 10 minutes (a frozen Lambda)
    const { policy, script, clock } = setup();
    const frozen = async (): Promise<never> => {
      clock.advance(10 * 60_000);
      throw new IdentityProviderTimeoutError('no answer');
    };
    const { prepare, sent } = script(frozen, 'token');
    // Act
    const issued = await policy.request(KEY, prepare, { budgetMs: BUDGET_MS });
    // Assess: retried, with a whole budget again
    expect(issued.accessToken).toBe('tok');
    expect(sent[1]?.timeoutMs).toBe(BUDGET_MS - 100);
  });

  describe('assertMayAsk', () => {
    it('throws the remembered refusal with cooldown_until during a cool-down', () => {
      const { policy } = setup();
      expect(() =>
        policy.assertMayAsk({
          cooldown: { until: Date.UTC(2031, 0, 1), message: 'refused', context: { a: 1 } },
        }),
      ).toThrow(
        expect.objectContaining({
          name: 'IdentityProviderError',
          context: { a: 1, cooldown_until: '2031-01-01T00:00:00Z' },
        }),
      );
    });

    it('throws 503 with the remaining Retry-After (at least 1 s) while throttled', () => {
      const { policy, clock } = setup();
      const error = (() => {
        try {
          policy.assertMayAsk({ throttledUntil: clock.now() + 12_500 });
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(IdentityProviderUnavailableError);
      expect((error as IdentityProviderUnavailableError).retryAfterSeconds).toBe(13);
    });

    it('lets a request ask when nothing is shared', () => {
      expect(() => setup().policy.assertMayAsk({})).not.toThrow();
    });
  });
});
