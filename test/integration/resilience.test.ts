import { setTimeout as delay } from 'node:timers/promises';
import { MAX_ENTRA_ATTEMPTS } from '../../lib/entra-retry-policy';
import { IdentityProviderError, IdentityProviderUnavailableError } from '../../lib/errors';
import { isoSeconds } from '../../lib/token-response';
import type { EmulatorFault } from '../fixtures/entra-emulator';
import {
  FLOW_START,
  FlowTestBed,
  ManualClock,
  recordingSleep,
  type TestApp,
} from '../fixtures/flow-test-bed';
import { rejectionOf } from '../fixtures/rejection';

/**
 * Upstream resilience of the client credentials flow against the Entra emulator's fault modes: retries within a
 * budget, Retry-After, the secret re-read on invalid_client, the cool-down after a refusal, and serving the
 * cached token while a refresh fails. Waits go through an injected sleep that records them and moves the
 * injected clock; nothing here really sleeps (except the one timeout, which needs a real hang).
 */

const LIFETIME_S = 3599;
const BUDGET_MS = 5000;
const COOLDOWN_MS = 30_000;

describe('Entra failures', () => {
  let bed: FlowTestBed;
  let n = 0;
  const fresh = () => `res${++n}`;

  beforeAll(async () => {
    bed = await FlowTestBed.start({ emulator: { tokenLifetimeSeconds: LIFETIME_S } });
  });
  afterAll(async () => {
    await bed.close();
  });
  afterEach(() => {
    bed.emulator.clearFaults();
    bed.emulator.setLatency(0);
  });

  /** A flow on a manual clock whose sleeps are recorded and move the clock; backoff jitter fixed at one half. */
  function instance(options: { entraTimeoutMs?: number } = {}) {
    const clock = new ManualClock();
    const { sleep, waits } = recordingSleep(clock);
    const flow = bed.flow({
      now: clock.now,
      sleep,
      random: () => 0.5,
      entraTimeoutMs: options.entraTimeoutMs,
      settings: { retryBudgetMs: BUDGET_MS, cooldownMs: COOLDOWN_MS },
    });
    return { clock, flow, waits };
  }

  /** Entra requests made while `act` ran. */
  async function entraRequestsDuring(act: () => Promise<unknown>): Promise<number> {
    const before = bed.emulator.tokenRequestCount;
    await act();
    return bed.emulator.tokenRequestCount - before;
  }

  describe('retries', () => {
    const transient: Array<[string, EmulatorFault]> = [
      ['an HTTP 500 page', { kind: 'html500' }],
      ['a connection reset', { kind: 'reset' }],
      ['a timeout', { kind: 'hang' }],
      ['a 503 without Retry-After', { kind: 'unavailable' }],
    ];

    it.each(transient)(
      'retries %s once and answers with the second Entra request’s token',
      async (_, fault) => {
        // Prepare
        const name = fresh();
        await bed.createService(name);
        const { flow } = instance({ entraTimeoutMs: 250 });
        bed.emulator.failNext(fault);
        // Act
        let token: string | undefined;
        const requests = await entraRequestsDuring(async () => {
          token = (await flow.getToken(name)).token.accessToken;
        });
        // Assess
        expect(requests).toBe(2);
        expect(token).toBe(bed.emulator.issuedTokens.at(-1));
      },
    );

    it('backs off with jitter between retries (a random share of 200 ms × 2^attempt)', async () => {
      const name = fresh();
      await bed.createService(name);
      const { flow, waits } = instance();
      bed.emulator.failNext({ kind: 'html500' }, 3);
      await flow.getToken(name);
      expect(waits).toEqual([100, 200, 400]);
    });

    it('stops after MAX_ENTRA_ATTEMPTS requests although the budget would allow more', async () => {
      // Prepare: 100 + 200 + 400 + 800 ms of backoff fit easily into 5 s
      const name = fresh();
      await bed.createService(name);
      const { flow, waits } = instance();
      bed.emulator.failNext({ kind: 'html500' }, 20);
      // Act
      let error: unknown;
      const requests = await entraRequestsDuring(async () => {
        error = await rejectionOf(flow.getToken(name));
      });
      // Assess
      expect(error).toBeInstanceOf(IdentityProviderError);
      expect(waits).toEqual([100, 200, 400, 800]);
      expect(requests).toBe(MAX_ENTRA_ATTEMPTS);
    });

    it('stops retrying once the next wait would exceed the retry budget', async () => {
      // Prepare: two 2 s Retry-After waits fit into the 5 s budget, a third does not
      const name = fresh();
      await bed.createService(name);
      const { flow, waits } = instance();
      bed.emulator.failNext({ kind: 'unavailable', retryAfterSeconds: 2 }, 20);
      // Act
      let error: unknown;
      const requests = await entraRequestsDuring(async () => {
        error = await rejectionOf(flow.getToken(name));
      });
      // Assess
      expect(error).toBeInstanceOf(IdentityProviderUnavailableError);
      expect(waits).toEqual([2000, 2000]);
      expect(requests).toBe(3);
    });

    it.each([
      ['Retry-After: 0', { kind: 'throttle', retryAfterSeconds: 0 } as EmulatorFault],
      [
        'a Retry-After date in the past',
        {
          kind: 'json',
          status: 429,
          body: { error: 'temporarily_unavailable' },
          headers: { 'Retry-After': 'Wed, 21 Oct 2015 07:28:00 GMT' },
        } as EmulatorFault,
      ],
    ])(
      'waits at least the backoff after %s and gives up after MAX_ENTRA_ATTEMPTS requests',
      async (_, fault) => {
        // Prepare: Entra answers every request at once with a pause that is already over
        const name = fresh();
        await bed.createService(name);
        const { flow, waits } = instance();
        bed.emulator.failNext(fault, 500);
        // Act
        let error: unknown;
        const requests = await entraRequestsDuring(async () => {
          error = await rejectionOf(flow.getToken(name));
        });
        // Assess: not a spin of requests inside the budget
        expect(error).toBeInstanceOf(IdentityProviderUnavailableError);
        expect(waits).toEqual([100, 200, 400, 800]);
        expect(requests).toBe(MAX_ENTRA_ATTEMPTS);
      },
    );

    it('waits out the Retry-After of a 429 within the budget, then answers with the new token', async () => {
      // Prepare
      const name = fresh();
      await bed.createService(name);
      const { flow, waits } = instance();
      bed.emulator.failNext({ kind: 'throttle', retryAfterSeconds: 3 });
      // Act
      let token: string | undefined;
      const requests = await entraRequestsDuring(async () => {
        token = (await flow.getToken(name)).token.accessToken;
      });
      // Assess
      expect(waits).toEqual([3000]);
      expect(requests).toBe(2);
      expect(token).toBe(bed.emulator.issuedTokens.at(-1));
    });

    it('waits out the Retry-After of a 503 within the budget, then answers with the new token', async () => {
      const name = fresh();
      await bed.createService(name);
      const { flow, waits } = instance();
      bed.emulator.failNext({ kind: 'unavailable', retryAfterSeconds: 1 });
      const result = await flow.getToken(name);
      expect(waits).toEqual([1000]);
      expect(result.token.accessToken).toBe(bed.emulator.issuedTokens.at(-1));
    });

    it('answers IdentityProviderUnavailableError with Retry-After at once when Retry-After exceeds the budget', async () => {
      // Prepare
      const name = fresh();
      await bed.createService(name);
      const { flow, waits } = instance();
      bed.emulator.failNext({ kind: 'throttle', retryAfterSeconds: 60 });
      // Act
      let error: unknown;
      const requests = await entraRequestsDuring(async () => {
        error = await rejectionOf(flow.getToken(name));
      });
      // Assess
      expect(error).toBeInstanceOf(IdentityProviderUnavailableError);
      expect((error as IdentityProviderUnavailableError).retryAfterSeconds).toBe(60);
      expect(waits).toEqual([]);
      expect(requests).toBe(1);
    });
  });

  describe('a Retry-After longer than the budget', () => {
    /** A service whose first request Entra throttled for 60 s, and the refused instance's clock. */
    async function throttledOnce() {
      const name = fresh();
      await bed.createService(name);
      const a = instance();
      bed.emulator.failNext({ kind: 'throttle', retryAfterSeconds: 60 });
      await rejectionOf(a.flow.getToken(name));
      return { name, ...a };
    }

    it('keeps every instance from asking Entra until it has passed: 503 with the remaining Retry-After', async () => {
      // Prepare
      const { name, clock } = await throttledOnce();
      clock.advance(20_000);
      const other = bed.flow({ now: clock.now, settings: { retryBudgetMs: BUDGET_MS } });
      // Act
      let error: unknown;
      const requests = await entraRequestsDuring(async () => {
        error = await rejectionOf(other.getToken(name));
      });
      // Assess
      expect(requests).toBe(0);
      expect(error).toBeInstanceOf(IdentityProviderUnavailableError);
      expect((error as IdentityProviderUnavailableError).retryAfterSeconds).toBe(40);
    });

    it('keeps forced refreshes from asking Entra too', async () => {
      const { name, clock } = await throttledOnce();
      const other = bed.flow({ now: clock.now, settings: { retryBudgetMs: BUDGET_MS } });
      const requests = await entraRequestsDuring(() =>
        rejectionOf(other.getToken(name, { forceRefresh: true })),
      );
      expect(requests).toBe(0);
    });

    it('lets the next request ask Entra once it has passed', async () => {
      const { name, clock, flow } = await throttledOnce();
      clock.advance(60_001);
      let token: string | undefined;
      const requests = await entraRequestsDuring(async () => {
        token = (await flow.getToken(name)).token.accessToken;
      });
      expect(requests).toBe(1);
      expect(token).toBe(bed.emulator.issuedTokens.at(-1));
    });
  });

  describe('invalid_client', () => {
    it('re-reads a secret rotated in Secrets Manager and answers with a token from the new secret', async () => {
      // Prepare: the instance has read (and cached) the old secret; then it is rotated everywhere
      const app = bed.newApp();
      const name = fresh();
      await bed.createService(name, { app });
      const { flow } = instance();
      await flow.getToken(name);
      const rotated = `rotated-${app.clientSecret}`;
      await bed.rotateSecret(name, rotated);
      bed.emulator.setClientSecrets(app.clientId, [rotated]);
      // Act
      let token: string | undefined;
      const requests = await entraRequestsDuring(async () => {
        token = (await flow.getToken(name, { forceRefresh: true })).token.accessToken;
      });
      // Assess: the first request with the cached old secret, the second with the re-read one
      expect(requests).toBe(2);
      expect(token).toBe(bed.emulator.issuedTokens.at(-1));
    });

    /** A service whose stored secret Entra does not accept, and an instance that has just been refused once. */
    async function refusedOnce() {
      const app: TestApp = bed.newApp();
      const name = fresh();
      await bed.createService(name, { app, clientSecret: 'not-the-secret-entra-knows' });
      const i = instance();
      const error = await rejectionOf(i.flow.getToken(name));
      return { name, error, refusedAt: i.clock.now(), ...i };
    }

    it('fails with invalid_client after exactly two Entra requests when the re-read secret is refused too', async () => {
      const before = bed.emulator.tokenRequestCount;
      const { error } = await refusedOnce();
      expect(bed.emulator.tokenRequestCount - before).toBe(2);
      expect(error).toBeInstanceOf(IdentityProviderError);
      expect((error as IdentityProviderError).context?.error).toBe('invalid_client');
    });

    it('refuses the service during the cool-down with the same error and cooldown_until, without asking Entra', async () => {
      // Prepare
      const { name, flow, clock, error: first, refusedAt } = await refusedOnce();
      clock.advance(COOLDOWN_MS - 1000);
      // Act
      let error: unknown;
      const requests = await entraRequestsDuring(async () => {
        error = await rejectionOf(flow.getToken(name));
      });
      // Assess
      expect(requests).toBe(0);
      expect(error).toBeInstanceOf(IdentityProviderError);
      expect((error as IdentityProviderError).message).toBe((first as IdentityProviderError).message);
      expect((error as IdentityProviderError).context).toMatchObject({
        error: 'invalid_client',
        cooldown_until: isoSeconds(refusedAt + COOLDOWN_MS),
      });
    });

    it('refuses the service during the cool-down on other instances too', async () => {
      const { name, clock } = await refusedOnce();
      const other = bed.flow({ now: clock.now, settings: { cooldownMs: COOLDOWN_MS } });
      let error: unknown;
      const requests = await entraRequestsDuring(async () => {
        error = await rejectionOf(other.getToken(name));
      });
      expect(requests).toBe(0);
      expect((error as IdentityProviderError).context).toHaveProperty('cooldown_until');
    });

    it('gives callers waiting for another instance’s refused request the refusal, without asking Entra', async () => {
      // Prepare: instance A asks Entra with a secret it refuses; B arrives while A holds the lease
      const app = bed.newApp();
      const name = fresh();
      await bed.createService(name, { app, clientSecret: 'not-the-secret-entra-knows' });
      const a = instance();
      const b = bed.flow({
        now: a.clock.now,
        // B's polls take real time too, so that A's two Entra requests (300 ms each) finish while B waits.
        sleep: async (ms) => {
          a.clock.advance(ms);
          await delay(25);
        },
        settings: { retryBudgetMs: BUDGET_MS, cooldownMs: COOLDOWN_MS, leaseWaitMs: 3000, leasePollMs: 100 },
      });
      bed.emulator.setLatency(300);
      const before = bed.emulator.tokenRequestCount;
      const refusedA = rejectionOf(a.flow.getToken(name));
      for (let i = 0; i < 500 && bed.emulator.tokenRequestCount === before; i++) await delay(10);
      // Act
      const error = await rejectionOf(b.getToken(name));
      await refusedA;
      // Assess: Entra saw only A's request and A's one re-read
      expect(bed.emulator.tokenRequestCount - before).toBe(2);
      expect(error).toBeInstanceOf(IdentityProviderError);
      expect((error as IdentityProviderError).context).toHaveProperty('cooldown_until');
    });

    it('asks Entra again once the cool-down has passed', async () => {
      // Prepare
      const { name, flow, clock } = await refusedOnce();
      clock.advance(COOLDOWN_MS + 1000);
      // Act
      let error: unknown;
      const requests = await entraRequestsDuring(async () => {
        error = await rejectionOf(flow.getToken(name));
      });
      // Assess: refused again by Entra itself (original request + one re-read), not by the cool-down
      expect(requests).toBe(2);
      expect((error as IdentityProviderError).context).not.toHaveProperty('cooldown_until');
    });
  });

  describe('while refresh-ahead fails', () => {
    /** A service with a cached token, and an instance on a clock past that token's refresh point. */
    async function pastRefreshPoint(app?: TestApp) {
      const name = fresh();
      await bed.createService(name, { app });
      const i = instance();
      const cached = (await i.flow.getToken(name)).token.accessToken;
      i.clock.set(FLOW_START + (LIFETIME_S / 2 + 1) * 1000);
      return { name, cached, ...i };
    }

    it('serves the still-valid cached token to every caller while Entra throttles, asking Entra once until the pause ends', async () => {
      // Prepare: Entra throttles for longer than the budget
      const { name, flow, clock, cached } = await pastRefreshPoint();
      bed.emulator.failNext({ kind: 'throttle', retryAfterSeconds: 120 }, 3);
      // Act
      const served: string[] = [];
      const requests = await entraRequestsDuring(async () => {
        for (let i = 0; i < 3; i++) {
          served.push((await flow.getToken(name)).token.accessToken);
          await flow.settled();
          clock.advance(30_000);
        }
      });
      // Assess: one refresh asked Entra; the throttle kept the next ones from asking; callers got the cached token
      expect(requests).toBe(1);
      expect(served).toEqual([cached, cached, cached]);
    });

    it('refreshes again once Entra’s pause has passed', async () => {
      // Prepare: a refresh throttled for 120 s
      const { name, flow, clock, cached } = await pastRefreshPoint();
      bed.emulator.failNext({ kind: 'throttle', retryAfterSeconds: 120 });
      await flow.getToken(name);
      await flow.settled();
      // Act
      clock.advance(121_000);
      await flow.getToken(name);
      await flow.settled();
      const next = await flow.getToken(name);
      // Assess
      expect(next.token.accessToken).not.toBe(cached);
      expect(next.token.accessToken).toBe(bed.emulator.issuedTokens.at(-1));
    });

    it('tries the refresh again on the next request after a failed one', async () => {
      // Prepare: one refresh that failed on every attempt
      const { name, flow, cached } = await pastRefreshPoint();
      bed.emulator.failNext({ kind: 'html500' }, MAX_ENTRA_ATTEMPTS);
      await flow.getToken(name);
      await flow.settled();
      // Act
      await flow.getToken(name);
      await flow.settled();
      const next = await flow.getToken(name);
      // Assess
      expect(next.token.accessToken).not.toBe(cached);
      expect(next.token.accessToken).toBe(bed.emulator.issuedTokens.at(-1));
    });

    it('serves the still-valid cached token after Entra refused the refresh (cool-down)', async () => {
      // Prepare: the app's secrets expire after the token was cached
      const app = bed.newApp();
      const { name, flow, cached } = await pastRefreshPoint(app);
      bed.emulator.registerApp({ ...app, clientSecrets: [app.clientSecret], secretExpired: true });
      await flow.getToken(name);
      await flow.settled(); // refused: invalid_client, secret re-read, refused again, cooled down
      // Act
      const result = await flow.getToken(name);
      // Assess
      expect(result.cache).toBe('hit');
      expect(result.token.accessToken).toBe(cached);
    });
  });
});
