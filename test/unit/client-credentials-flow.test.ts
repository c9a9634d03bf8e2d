import { AuthorityPolicy } from '../../lib/authority';
import { ClientCredentialsFlow, type FlowSettings } from '../../lib/client-credentials-flow';
import {
  IdentityProviderError,
  IdentityProviderUnavailableError,
  NotFoundError,
  ServiceInactiveError,
} from '../../lib/errors';
import { ManualClock } from '../fixtures/clock';
import {
  FakeTokenEndpoint,
  InMemoryRefreshCoordinator,
  InMemorySecretStore,
  InMemoryServiceRegistry,
  InMemoryTokenCache,
  serviceRecord,
  silentLogger,
} from '../fixtures/in-memory';

/**
 * The token flow's orchestration over in-memory ports and a manual clock: the cache, single flight, refresh-ahead,
 * following a lease holder, cool-downs and throttles, clears. Each "instance" is a flow of its own over the shared
 * stores; sleeps move the clock.
 */
const GRAPH = 'https://graph.microsoft.com/.default';
const LIFETIME_MS = 3600_000;

function world() {
  const clock = new ManualClock();
  const registry = new InMemoryServiceRegistry();
  const secrets = new InMemorySecretStore();
  const cache = new InMemoryTokenCache(clock.now);
  const coordinator = new InMemoryRefreshCoordinator(clock.now);
  const entra = new FakeTokenEndpoint(clock.now);
  const record = serviceRecord('svc');
  registry.services.set('svc', record);
  secrets.put(record.secret?.arn as string, 'the-secret');
  /** A new instance; `onSleep` runs at each of its sleeps (after the clock moved). */
  const instance = (
    settings: Partial<FlowSettings> = {},
    onSleep: (ms: number) => void = () => undefined,
  ) => {
    const sleeps: number[] = [];
    const flow = new ClientCredentialsFlow({
      registry,
      cache,
      coordinator,
      secrets,
      entra,
      authority: new AuthorityPolicy(''),
      logger: silentLogger(),
      now: clock.now,
      random: () => 0.5,
      sleep: async (ms) => {
        sleeps.push(ms);
        clock.advance(ms);
        onSleep(ms);
        await new Promise((resolve) => setImmediate(resolve));
      },
      settings,
    });
    return { flow, sleeps };
  };
  const key = { service: 'svc', version: record.version, scope: GRAPH };
  return { clock, registry, secrets, cache, coordinator, entra, record, instance, key };
}

describe('ClientCredentialsFlow', () => {
  describe('the cache', () => {
    it('serves the cached token without asking Entra until 60 s before it expires', async () => {
      // Prepare
      const w = world();
      const { flow } = w.instance();
      const first = await flow.getToken('svc');
      // Act
      w.clock.advance(LIFETIME_MS - 61_000);
      const later = await flow.getToken('svc');
      // Assess
      expect(first.cache).toBe('miss');
      expect(later).toMatchObject({ cache: 'hit', token: { accessToken: first.token.accessToken } });
      expect(w.entra.requests).toHaveLength(1);
    });

    it('asks Entra once for concurrent callers of one instance (single flight)', async () => {
      const w = world();
      const { flow } = w.instance();
      w.entra.hold();
      const calls = Array.from({ length: 5 }, () => flow.getToken('svc'));
      await new Promise((resolve) => setImmediate(resolve));
      w.entra.release();
      const tokens = (await Promise.all(calls)).map((r) => r.token.accessToken);
      expect(new Set(tokens)).toEqual(new Set(['token-1']));
      expect(w.entra.requests).toHaveLength(1);
    });

    it('refreshes first a cached token with less validity left than min_ttl', async () => {
      const w = world();
      const { flow } = w.instance();
      await flow.getToken('svc');
      w.clock.advance(10 * 60_000);
      const result = await flow.getToken('svc', { minTtlSeconds: 3100 }); // 3000 s are left
      expect(result).toMatchObject({ cache: 'miss', token: { accessToken: 'token-2' } });
    });

    it('asks Entra on a forced refresh although a valid token is cached', async () => {
      const w = world();
      const { flow } = w.instance();
      await flow.getToken('svc');
      const forced = await flow.getToken('svc', { forceRefresh: true });
      expect(forced).toMatchObject({ cache: 'refresh', token: { accessToken: 'token-2' } });
    });

    it('records the caller’s use with the token it fetched (last_used_at = now)', async () => {
      const w = world();
      const { flow } = w.instance();
      await flow.getToken('svc');
      expect((await w.cache.get(w.key))?.lastUsedAt).toBe(w.clock.now());
    });

    it('refuses unknown and inactive services before reading any token', async () => {
      const w = world();
      const { flow } = w.instance();
      w.registry.services.set('off', serviceRecord('off', { is_active: false }));
      await expect(flow.getToken('nope')).rejects.toBeInstanceOf(NotFoundError);
      await expect(flow.getToken('off')).rejects.toBeInstanceOf(ServiceInactiveError);
      expect(w.entra.requests).toHaveLength(0);
    });
  });

  describe('refresh-ahead', () => {
    it('serves the still-valid token past its refresh point and refreshes it once in the background', async () => {
      // Prepare
      const w = world();
      const { flow } = w.instance();
      await flow.getToken('svc');
      w.clock.advance(LIFETIME_MS / 2 + 1000);
      // Act
      const results = await Promise.all([flow.getToken('svc'), flow.getToken('svc')]);
      await flow.settled();
      // Assess
      expect(results.map((r) => r.token.accessToken)).toEqual(['token-1', 'token-1']);
      expect(w.entra.requests).toHaveLength(2);
      expect((await flow.getToken('svc')).token.accessToken).toBe('token-2');
    });

    it('leaves the refresh to the instance that holds the lease', async () => {
      const w = world();
      await w.instance().flow.getToken('svc');
      w.clock.advance(LIFETIME_MS / 2 + 1000);
      await w.coordinator.acquire(w.key, 'other-instance', 15_000);
      const { flow } = w.instance();
      await flow.getToken('svc');
      await flow.settled();
      expect(w.entra.requests).toHaveLength(1);
    });
  });

  describe('waiting for another instance', () => {
    it('follows the lease holder until its token is cached, then serves that token', async () => {
      // Prepare: A asks Entra, which takes its time; B arrives meanwhile and waits; A's answer comes at B's 3rd poll
      const w = world();
      const a = w.instance().flow;
      w.entra.hold();
      const fromA = a.getToken('svc');
      await new Promise((resolve) => setImmediate(resolve));
      let polls = 0;
      const b = w.instance({ leasePollMs: 100 }, () => {
        if (++polls === 3) w.entra.release();
      }).flow;
      // Act
      const fromB = await b.getToken('svc');
      // Assess
      expect(fromB.token.accessToken).toBe((await fromA).token.accessToken);
      expect(w.entra.requests).toHaveLength(1);
    });

    it('takes over when the holder’s lease expired without a token', async () => {
      const w = world();
      await w.coordinator.acquire(w.key, 'crashed', 1000);
      const { flow, sleeps } = w.instance({ leasePollMs: 100 });
      const result = await flow.getToken('svc');
      expect(result.cache).toBe('miss');
      expect(w.entra.requests).toHaveLength(1);
      expect(sleeps.reduce((x, y) => x + y, 0)).toBe(1100);
    });

    it('answers 503 with Retry-After at its deadline while the holder is still at work, without asking Entra', async () => {
      const w = world();
      await w.coordinator.acquire(w.key, 'slow', 60_000);
      const { flow } = w.instance({ leaseWaitMs: 1000, retryBudgetMs: 2000, leasePollMs: 500 });
      const error = await flow.getToken('svc').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdentityProviderUnavailableError);
      expect((error as IdentityProviderUnavailableError).retryAfterSeconds).toBe(57);
      expect(w.entra.requests).toHaveLength(0);
    });

    it('passes on the holder’s refusal as soon as it is recorded', async () => {
      const w = world();
      await w.coordinator.acquire(w.key, 'refused', 15_000);
      const { flow } = w.instance({ leasePollMs: 100 }, () => {
        void w.coordinator.coolDown(w.key, w.clock.now() + 30_000, {
          message: 'invalid_client: AADSTS7000215',
          context: { error: 'invalid_client' },
        });
        void w.coordinator.release(w.key, 'refused');
      });
      const error = await flow.getToken('svc').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdentityProviderError);
      expect((error as IdentityProviderError).context).toMatchObject({ error: 'invalid_client' });
      expect(w.entra.requests).toHaveLength(0);
    });

    it('passes on the throttle the holder recorded as 503', async () => {
      const w = world();
      await w.coordinator.acquire(w.key, 'throttled', 15_000);
      const { flow } = w.instance({ leasePollMs: 100 }, () => {
        void w.coordinator.throttle(w.key, w.clock.now() + 60_000);
        void w.coordinator.release(w.key, 'throttled');
      });
      const error = await flow.getToken('svc').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdentityProviderUnavailableError);
      expect(w.entra.requests).toHaveLength(0);
    });
  });

  describe('writes and clears', () => {
    it('serves its token to its caller but leaves a newer cached token in place', async () => {
      // Prepare: A's request is slow; meanwhile a newer token is cached (another instance, after A's lease)
      const w = world();
      const { flow } = w.instance();
      w.entra.hold();
      const fromA = flow.getToken('svc');
      await new Promise((resolve) => setImmediate(resolve));
      w.clock.advance(20_000);
      await w.cache.put(w.key, {
        accessToken: 'newer',
        scope: GRAPH,
        acquiredAt: w.clock.now(),
        expiresAt: w.clock.now() + LIFETIME_MS,
        refreshAt: w.clock.now() + LIFETIME_MS / 2,
      });
      // Act
      w.entra.release();
      const result = await fromA;
      // Assess
      expect(result.token.accessToken).toBe('token-1');
      expect((await w.cache.get(w.key))?.accessToken).toBe('newer');
    });

    it('marks the current scopes when clearing, so a token asked for before the clear is not cached', async () => {
      const w = world();
      const { flow } = w.instance();
      w.entra.hold();
      const inFlight = flow.getToken('svc', { forceRefresh: true });
      await new Promise((resolve) => setImmediate(resolve));
      w.clock.advance(1000);
      await flow.clearTokens('svc');
      w.entra.release();
      await inFlight;
      expect(await w.cache.get(w.key)).toBeUndefined();
    });

    it('keeps cool-downs through a clear', async () => {
      const w = world();
      await w.coordinator.coolDown(w.key, w.clock.now() + 30_000, { message: 'refused', context: {} });
      const { flow } = w.instance();
      await flow.clearTokens('svc');
      await expect(flow.getToken('svc')).rejects.toBeInstanceOf(IdentityProviderError);
      expect(w.entra.requests).toHaveLength(0);
    });

    it('answers 404 to a clear of a service that does not exist', async () => {
      const w = world();
      await expect(w.instance().flow.clearTokens('nope')).rejects.toBeInstanceOf(NotFoundError);
    });
  });
});
