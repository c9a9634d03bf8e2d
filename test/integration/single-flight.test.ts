import { setTimeout as delay } from 'node:timers/promises';
import { IdentityProviderUnavailableError } from '../../lib/errors';
import {
  FLOW_START,
  FlowTestBed,
  GRAPH,
  ManualClock,
  recordingSleep,
  STORAGE,
  VAULT,
} from '../fixtures/flow-test-bed';

/**
 * Entra is asked as rarely as possible: one request per key for many concurrent callers, in one instance and
 * across instances (the DynamoDB refresh lease), refresh-ahead in the background, and min_ttl. Every flow here
 * runs over DynamoDB Local, the embedded Secrets Manager server and the Entra emulator; time is an injected
 * clock, except where instances must really overlap (the emulator's latency makes them).
 */

const LIFETIME_S = 3599;
const ENTRA_LATENCY_MS = 300;

describe('single flight, refresh lease and refresh-ahead', () => {
  let bed: FlowTestBed;
  let n = 0;
  const fresh = () => `sf${++n}`;

  /** Entra requests made while `act` ran. */
  async function entraRequestsDuring(act: () => Promise<unknown>): Promise<number> {
    const before = bed.emulator.tokenRequestCount;
    await act();
    return bed.emulator.tokenRequestCount - before;
  }

  /** Waits (real time, bounded) until the emulator has received `count` token requests in total. */
  async function untilEntraRequests(count: number): Promise<void> {
    for (let i = 0; i < 500 && bed.emulator.tokenRequestCount < count; i++) await delay(10);
    if (bed.emulator.tokenRequestCount < count) throw new Error('Entra request did not arrive within 5 s');
  }

  beforeAll(async () => {
    bed = await FlowTestBed.start({ emulator: { tokenLifetimeSeconds: LIFETIME_S } });
  });
  afterAll(async () => {
    await bed.close();
  });
  afterEach(() => {
    bed.emulator.setLatency(0);
    bed.emulator.setRefreshIn(undefined);
    bed.emulator.clearFaults();
  });

  describe('on a cache miss', () => {
    it('gives concurrent callers of one instance the same token from one Entra request', async () => {
      // Prepare
      const name = fresh();
      await bed.createService(name);
      const flow = bed.flow({ now: new ManualClock().now });
      bed.emulator.setLatency(ENTRA_LATENCY_MS);
      // Act
      let results: Awaited<ReturnType<typeof flow.getToken>>[] = [];
      const requests = await entraRequestsDuring(async () => {
        results = await Promise.all(Array.from({ length: 20 }, () => flow.getToken(name)));
      });
      // Assess
      expect(requests).toBe(1);
      expect(new Set(results.map((r) => r.token.accessToken)).size).toBe(1);
    });

    it('gives concurrent callers on several instances the same token from exactly one Entra request', async () => {
      // Prepare: four instances (separate flows over the same tables), real time so that they overlap
      const name = fresh();
      await bed.createService(name);
      const instances = Array.from({ length: 4 }, () => bed.flow({ settings: { leasePollMs: 25 } }));
      bed.emulator.setLatency(ENTRA_LATENCY_MS);
      // Act
      let tokens: string[] = [];
      const requests = await entraRequestsDuring(async () => {
        const results = await Promise.all(
          instances.flatMap((flow) => Array.from({ length: 8 }, () => flow.getToken(name))),
        );
        tokens = results.map((r) => r.token.accessToken);
      });
      // Assess
      expect(requests).toBe(1);
      expect(tokens).toHaveLength(32);
      expect(new Set(tokens).size).toBe(1);
    });
  });

  describe('the refresh lease', () => {
    const key = { service: 'lease-test', version: 'v1', scope: GRAPH };

    it('is refused to a second holder while the first holder’s lease is live', async () => {
      const clock = new ManualClock();
      const coordinator = bed.coordinator(clock.now);
      const k = { ...key, service: fresh() };
      expect(await coordinator.acquire(k, 'A', 10_000)).toBe(true);
      clock.advance(9_999);
      expect(await coordinator.acquire(k, 'B', 10_000)).toBe(false);
    });

    it('is taken over by a new holder once the holder’s lease has expired', async () => {
      // Prepare: A takes the lease and "crashes" (never releases it)
      const clock = new ManualClock();
      const coordinator = bed.coordinator(clock.now);
      const k = { ...key, service: fresh() };
      await coordinator.acquire(k, 'A', 10_000);
      // Act
      clock.advance(10_001);
      const takenOver = await coordinator.acquire(k, 'C', 10_000);
      // Assess
      expect(takenOver).toBe(true);
      expect(await coordinator.acquire(k, 'D', 10_000)).toBe(false); // C's lease is live now
    });

    it('stays with its holder when a non-holder releases it', async () => {
      const clock = new ManualClock();
      const coordinator = bed.coordinator(clock.now);
      const k = { ...key, service: fresh() };
      await coordinator.acquire(k, 'A', 10_000);
      await coordinator.release(k, 'B');
      expect(await coordinator.acquire(k, 'C', 10_000)).toBe(false);
    });

    it('is free for the next holder as soon as its holder releases it', async () => {
      const clock = new ManualClock();
      const coordinator = bed.coordinator(clock.now);
      const k = { ...key, service: fresh() };
      await coordinator.acquire(k, 'A', 10_000);
      await coordinator.release(k, 'A');
      expect(await coordinator.acquire(k, 'B', 10_000)).toBe(true);
    });

    it('makes a waiter follow a crashed holder until its lease expires, then take over with one Entra request', async () => {
      // Prepare: a holder that took the lease for 2 s and then crashed
      const name = fresh();
      await bed.createService(name);
      const clock = new ManualClock();
      await bed.coordinator(clock.now).acquire(await bed.cacheKey(name), 'crashed-holder', 2000);
      const { sleep, waits } = recordingSleep(clock);
      const flow = bed.flow({ now: clock.now, sleep, settings: { leaseWaitMs: 5000, leasePollMs: 100 } });
      // Act
      let cache: string | undefined;
      const requests = await entraRequestsDuring(async () => {
        ({ cache } = await flow.getToken(name));
      });
      // Assess: it waited exactly until the lease had expired (polls of 100 ms), not a fixed time
      expect(cache).toBe('miss');
      expect(requests).toBe(1);
      expect(waits.reduce((a, b) => a + b, 0)).toBe(2100);
    });

    it('answers 503 with Retry-After instead of asking Entra while the holder is still at work at the deadline', async () => {
      // Prepare: a holder whose lease outlives the waiter's whole budget (leaseWaitMs + retryBudgetMs)
      const name = fresh();
      await bed.createService(name);
      const clock = new ManualClock();
      await bed.coordinator(clock.now).acquire(await bed.cacheKey(name), 'slow-holder', 60_000);
      const { sleep } = recordingSleep(clock);
      const flow = bed.flow({
        now: clock.now,
        sleep,
        settings: { leaseWaitMs: 1000, retryBudgetMs: 2000, leasePollMs: 100 },
      });
      // Act
      let error: unknown;
      const requests = await entraRequestsDuring(async () => {
        error = await flow.getToken(name).catch((e: unknown) => e);
      });
      // Assess
      expect(requests).toBe(0);
      expect(error).toBeInstanceOf(IdentityProviderUnavailableError);
      expect((error as IdentityProviderUnavailableError).retryAfterSeconds).toBe(57);
    });

    it('does not make a forced refresh wait out leaseWaitMs for another instance’s forced refresh', async () => {
      // Prepare: a cached token; instance A is forcing a refresh (holding the lease) when B forces one too
      const name = fresh();
      await bed.createService(name);
      const clock = new ManualClock();
      const a = bed.flow({ now: clock.now });
      const old = (await a.getToken(name)).token.accessToken;
      const waits: number[] = [];
      const b = bed.flow({
        now: clock.now,
        // B's polls take real time too, so that A's Entra request (300 ms) can finish while B waits.
        sleep: async (ms) => {
          waits.push(ms);
          clock.advance(ms);
          await delay(25);
        },
        settings: { leaseWaitMs: 3000, leasePollMs: 100 },
      });
      bed.emulator.setLatency(ENTRA_LATENCY_MS);
      const aForced = a.getToken(name, { forceRefresh: true });
      await untilEntraRequests(bed.emulator.tokenRequestCount + 1);
      // Act
      const bForced = await b.getToken(name, { forceRefresh: true });
      await aForced;
      // Assess: B gets a new token without sitting out the whole lease wait (a wait it can never win)
      expect(bForced.token.accessToken).not.toBe(old);
      expect(waits.reduce((x, y) => x + y, 0)).toBeLessThan(3000);
    });
  });

  describe('refresh-ahead', () => {
    /** A service with a cached token, and an instance on a clock now past that token's refresh point. */
    async function pastRefreshPoint(options: { instances?: number } = {}) {
      const name = fresh();
      await bed.createService(name);
      const clock = new ManualClock();
      const instances = Array.from({ length: options.instances ?? 1 }, () => bed.flow({ now: clock.now }));
      const first = instances[0];
      if (!first) throw new Error('no instance');
      const old = (await first.getToken(name)).token.accessToken;
      clock.set(FLOW_START + (LIFETIME_S / 2 + 1) * 1000);
      return { name, clock, instances, flow: first, old };
    }

    it('answers past the refresh point at once with the still-valid old token', async () => {
      // Prepare
      const { name, flow, old } = await pastRefreshPoint();
      bed.emulator.setLatency(ENTRA_LATENCY_MS);
      const issuedBefore = bed.emulator.issuedTokens.length;
      // Act
      const result = await flow.getToken(name);
      // Assess: answered before Entra could issue anything
      expect(result.cache).toBe('hit');
      expect(result.token.accessToken).toBe(old);
      expect(bed.emulator.issuedTokens.length).toBe(issuedBefore);
      await flow.settled();
    });

    it('fetches one new token in the background past the refresh point, which later callers get', async () => {
      // Prepare
      const { name, flow, old } = await pastRefreshPoint();
      // Act
      const requests = await entraRequestsDuring(async () => {
        await flow.getToken(name);
        await flow.settled();
      });
      const next = await flow.getToken(name);
      // Assess
      expect(requests).toBe(1);
      expect(next.token.accessToken).not.toBe(old);
      expect(next.token.accessToken).toBe(bed.emulator.issuedTokens.at(-1));
    });

    it('runs only one refresh for concurrent callers of one instance past the refresh point', async () => {
      // Prepare
      const { name, flow, old } = await pastRefreshPoint();
      bed.emulator.setLatency(ENTRA_LATENCY_MS);
      // Act
      let tokens: string[] = [];
      const requests = await entraRequestsDuring(async () => {
        tokens = (await Promise.all(Array.from({ length: 10 }, () => flow.getToken(name)))).map(
          (r) => r.token.accessToken,
        );
        await flow.settled();
      });
      // Assess
      expect(requests).toBe(1);
      expect(new Set(tokens)).toEqual(new Set([old]));
    });

    it('runs only one refresh for concurrent callers on several instances past the refresh point', async () => {
      // Prepare
      const { name, instances, old } = await pastRefreshPoint({ instances: 4 });
      bed.emulator.setLatency(ENTRA_LATENCY_MS);
      // Act
      let tokens: string[] = [];
      const requests = await entraRequestsDuring(async () => {
        const results = await Promise.all(
          instances.flatMap((flow) => Array.from({ length: 5 }, () => flow.getToken(name))),
        );
        tokens = results.map((r) => r.token.accessToken);
        await Promise.all(instances.map((flow) => flow.settled()));
      });
      // Assess
      expect(requests).toBe(1);
      expect(new Set(tokens)).toEqual(new Set([old]));
    });

    it('takes the refresh point from Entra’s refresh_in instead of the lifetime fraction', async () => {
      // Prepare: refresh_in 600 s, far before half the lifetime (1799.5 s)
      const name = fresh();
      await bed.createService(name);
      const clock = new ManualClock();
      const flow = bed.flow({ now: clock.now });
      bed.emulator.setRefreshIn(600);
      await flow.getToken(name);
      // Act
      clock.set(FLOW_START + 599_000);
      const before = await entraRequestsDuring(async () => {
        await flow.getToken(name);
        await flow.settled();
      });
      clock.set(FLOW_START + 601_000);
      const after = await entraRequestsDuring(async () => {
        await flow.getToken(name);
        await flow.settled();
      });
      // Assess
      expect(before).toBe(0);
      expect(after).toBe(1);
    });

    it('refreshes by the configured fraction of the lifetime when Entra sends no refresh_in', async () => {
      // Prepare: a quarter of 3599 s is 899.75 s
      const name = fresh();
      await bed.createService(name);
      const clock = new ManualClock();
      const flow = bed.flow({ now: clock.now, settings: { refreshFraction: 0.25 } });
      await flow.getToken(name);
      // Act
      clock.set(FLOW_START + 899_000);
      const before = await entraRequestsDuring(async () => {
        await flow.getToken(name);
        await flow.settled();
      });
      clock.set(FLOW_START + 900_000);
      const after = await entraRequestsDuring(async () => {
        await flow.getToken(name);
        await flow.settled();
      });
      // Assess
      expect(before).toBe(0);
      expect(after).toBe(1);
    });
  });

  describe('min_ttl', () => {
    /** A service with a token cached at FLOW_START, and the clock 100 s later (3499 s of validity left). */
    async function cachedFor100Seconds(scope: string) {
      const name = fresh();
      await bed.createService(name, { scopes: [scope] });
      const clock = new ManualClock();
      const flow = bed.flow({ now: clock.now });
      const cached = (await flow.getToken(name)).token.accessToken;
      clock.set(FLOW_START + 100_000);
      return { name, flow, cached };
    }

    it('refreshes first a cached token with less validity left than min_ttl', async () => {
      // Prepare
      const { name, flow, cached } = await cachedFor100Seconds(VAULT);
      // Act
      let result: Awaited<ReturnType<typeof flow.getToken>> | undefined;
      const requests = await entraRequestsDuring(async () => {
        result = await flow.getToken(name, { minTtlSeconds: 3500 });
      });
      // Assess
      expect(requests).toBe(1);
      expect(result?.cache).toBe('miss');
      expect(result?.token.accessToken).not.toBe(cached);
      expect(result && result.token.expiresAt - result.token.acquiredAt).toBe(LIFETIME_S * 1000);
    });

    it('serves a cached token with more validity left than min_ttl', async () => {
      // Prepare
      const { name, flow, cached } = await cachedFor100Seconds(STORAGE);
      // Act
      let result: Awaited<ReturnType<typeof flow.getToken>> | undefined;
      const requests = await entraRequestsDuring(async () => {
        result = await flow.getToken(name, { minTtlSeconds: 3400 });
      });
      // Assess
      expect(requests).toBe(0);
      expect(result?.cache).toBe('hit');
      expect(result?.token.accessToken).toBe(cached);
    });
  });
});
