import { StoreError } from '../../lib/errors';
import type { MetricsSink } from '../../lib/metrics';
import { OutageFallback } from '../../lib/outage-fallback';
import type { CachedToken } from '../../lib/token-cache';
import { ManualClock } from '../fixtures/clock';
import {
  InMemoryRefreshCoordinator,
  InMemoryServiceRegistry,
  InMemoryTokenCache,
  serviceRecord,
  silentLogger,
} from '../fixtures/in-memory';

/** The outage fallback over in-memory stores that the tests switch off and on. */
const KEY = { service: 'svc', version: 'v-svc-1', scope: 'https://graph.microsoft.com/.default' };

function setup() {
  const clock = new ManualClock();
  const registry = new InMemoryServiceRegistry();
  const cache = new InMemoryTokenCache(clock.now);
  const coordinator = new InMemoryRefreshCoordinator(clock.now);
  const degraded: string[] = [];
  const metrics: MetricsSink = { count: (name) => degraded.push(name), milliseconds: () => undefined };
  const fallback = new OutageFallback({
    registry,
    cache,
    coordinator,
    logger: silentLogger(),
    metrics,
    now: clock.now,
  });
  registry.services.set('svc', serviceRecord('svc'));
  const token: CachedToken = {
    accessToken: 'tok',
    scope: KEY.scope,
    acquiredAt: clock.now(),
    expiresAt: clock.now() + 3600_000,
    refreshAt: clock.now() + 1800_000,
  };
  const down = () => {
    registry.down = true;
    cache.down = true;
    coordinator.down = true;
  };
  return { clock, registry, cache, coordinator, fallback, degraded, token, down };
}

describe('OutageFallback', () => {
  it('answers a service read from memory while the registry fails, and counts it', async () => {
    const { fallback, down, degraded } = setup();
    await fallback.registry.get('svc');
    down();
    expect((await fallback.registry.get('svc'))?.name).toBe('svc');
    expect(degraded).toEqual(['StoreDegraded']);
  });

  it('lets the failure stand for a service it never read', async () => {
    const { fallback, down } = setup();
    down();
    await expect(fallback.registry.get('svc')).rejects.toBeInstanceOf(StoreError);
  });

  it('forgets a service (and its tokens) once a read finds it deleted', async () => {
    const { fallback, registry, down, token } = setup();
    await fallback.registry.get('svc');
    await fallback.cache.put(KEY, token);
    registry.services.delete('svc');
    expect(await fallback.registry.get('svc')).toBeUndefined();
    down();
    await expect(fallback.registry.get('svc')).rejects.toBeInstanceOf(StoreError);
    expect(await fallback.cache.get(KEY)).toBeUndefined();
  });

  it('forgets a service once a read finds it inactive', async () => {
    const { fallback, registry, down } = setup();
    await fallback.registry.get('svc');
    registry.services.set('svc', serviceRecord('svc', { is_active: false }));
    await fallback.registry.get('svc');
    down();
    await expect(fallback.registry.get('svc')).rejects.toBeInstanceOf(StoreError);
  });

  it('uses a remembered service for at most 5 minutes after the read', async () => {
    const { fallback, down, clock } = setup();
    await fallback.registry.get('svc');
    down();
    clock.advance(5 * 60_000);
    expect(await fallback.registry.get('svc')).toBeDefined();
    clock.advance(1);
    await expect(fallback.registry.get('svc')).rejects.toBeInstanceOf(StoreError);
  });

  it('answers token reads from the last token it read or wrote while the cache fails, while it is servable', async () => {
    const { fallback, down, token, clock } = setup();
    await fallback.cache.put(KEY, token);
    down();
    expect((await fallback.cache.get(KEY))?.accessToken).toBe('tok');
    expect((await (await fallback.cache.lookup('svc')).get(KEY))?.accessToken).toBe('tok');
    clock.advance(3600_000 - 60_000);
    expect(await fallback.cache.get(KEY)).toBeUndefined();
  });

  it('does not answer from memory when the cache answers that there is no token', async () => {
    const { fallback, cache, token } = setup();
    await fallback.cache.put(KEY, token);
    cache.items.clear();
    expect(await fallback.cache.get(KEY)).toBeUndefined();
  });

  it('does not remember a token whose write was refused (a newer one is cached)', async () => {
    const { fallback, cache, token, down } = setup();
    await cache.put(KEY, { ...token, accessToken: 'newer', acquiredAt: token.acquiredAt + 1 });
    expect(await fallback.cache.put(KEY, token)).toBe(false);
    cache.items.clear();
    down();
    expect(await fallback.cache.get(KEY)).toBeUndefined();
  });

  it('keeps a token whose write failed in memory', async () => {
    const { fallback, token, down } = setup();
    down();
    expect(await fallback.cache.put(KEY, token)).toBe(true);
    expect((await fallback.cache.get(KEY))?.accessToken).toBe('tok');
  });

  it('counts a lease as won, and sees no lease, cool-down or throttle, while the coordinator fails', async () => {
    const { fallback, down } = setup();
    down();
    expect(await fallback.coordinator.acquire(KEY, 'me', 15_000)).toBe(true);
    expect(await fallback.coordinator.state(KEY)).toEqual({});
    await expect(fallback.coordinator.release(KEY, 'me')).resolves.toBeUndefined();
  });

  it('lets a failed clear fail loudly', async () => {
    const { fallback, down } = setup();
    down();
    await expect(fallback.cache.clear('svc')).rejects.toBeInstanceOf(StoreError);
  });
});
