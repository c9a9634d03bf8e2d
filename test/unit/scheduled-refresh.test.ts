import { AuthorityPolicy } from '../../lib/authority';
import { ClientCredentialsFlow } from '../../lib/client-credentials-flow';
import type { TokenRequest } from '../../lib/entra-token-client';
import { ScheduledRefresh } from '../../lib/scheduled-refresh';
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
 * The scheduled refresh's choices over in-memory stores and a manual clock: what is due, in which order, how many
 * at a time, and what happens when its time runs out. Entra "takes" 2 s per request by moving the clock.
 */
const GRAPH = 'https://graph.microsoft.com/.default';
const MINUTE = 60_000;

/** A token endpoint that moves the clock by `latencyMs` per request and counts requests in flight. */
class SlowEndpoint extends FakeTokenEndpoint {
  inFlight = 0;
  maxInFlight = 0;
  constructor(
    private readonly clock: ManualClock,
    private readonly latencyMs: number,
  ) {
    super(clock.now);
  }
  override async requestToken(request: TokenRequest) {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise((resolve) => setImmediate(resolve));
    this.clock.advance(this.latencyMs);
    try {
      return await super.requestToken(request);
    } finally {
      this.inFlight--;
    }
  }
}

function setup(latencyMs = 0) {
  const clock = new ManualClock();
  const registry = new InMemoryServiceRegistry();
  const secrets = new InMemorySecretStore();
  const cache = new InMemoryTokenCache(clock.now);
  const coordinator = new InMemoryRefreshCoordinator(clock.now);
  const entra = new SlowEndpoint(clock, latencyMs);
  const flow = new ClientCredentialsFlow({
    registry,
    cache,
    coordinator,
    secrets,
    entra,
    authority: new AuthorityPolicy(''),
    logger: silentLogger(),
    now: clock.now,
  });
  const scheduled = (concurrency = 4) =>
    new ScheduledRefresh({
      flow,
      registry,
      cache,
      logger: silentLogger(),
      horizonMs: 6 * MINUTE,
      usedWithinMs: 60 * MINUTE,
      retryBudgetMs: 12_000,
      concurrency,
      now: clock.now,
    });
  /** Services with a token each, cached `ageMinutes[i]` minutes ago (1-hour tokens, refreshed at 30 minutes). */
  const cached = async (ageMinutes: number[]) => {
    const start = clock.now();
    const names: string[] = [];
    for (const [i, age] of ageMinutes.entries()) {
      const name = `svc${i}`;
      const record = serviceRecord(name);
      registry.services.set(name, record);
      secrets.put(record.secret?.arn as string, 'secret');
      const acquiredAt = start - age * MINUTE;
      await cache.put(
        { service: name, version: record.version, scope: GRAPH },
        {
          accessToken: `old-${name}`,
          scope: GRAPH,
          acquiredAt,
          expiresAt: acquiredAt + 60 * MINUTE,
          refreshAt: acquiredAt + 30 * MINUTE,
          lastUsedAt: start - MINUTE,
        },
      );
      names.push(name);
    }
    return names;
  };
  return { clock, registry, cache, entra, scheduled, cached };
}

describe('ScheduledRefresh', () => {
  it('plans per scope: due, fresh, unused or not cached', async () => {
    const w = setup();
    const [name] = await w.cached([26]);
    const record = w.registry.services.get(name as string);
    w.registry.services.set(name as string, {
      ...(record as NonNullable<typeof record>),
      config: {
        ...(record as NonNullable<typeof record>).config,
        scopes: `${GRAPH} https://vault.azure.net/.default`,
      },
    });
    const plan = await w.scheduled().plan(name as string);
    expect(plan.due.map((d) => d.key.scope)).toEqual([GRAPH]);
    expect(plan.outcomes).toEqual({ 'https://vault.azure.net/.default': 'not-cached' });
  });

  it('refreshes every due token of every service, at most `concurrency` at a time', async () => {
    const w = setup(2000);
    await w.cached([26, 27, 28, 29, 26, 27, 10]);
    const result = await w.scheduled(3).run(w.clock.now() + 10 * MINUTE);
    expect(result).toEqual({ services: 7, refreshed: 6, failed: 0, skipped: 0 });
    expect(w.entra.maxInFlight).toBe(3);
  });

  it('takes the most urgent first and skips what its deadline leaves no time for', async () => {
    // Prepare: 4 due tokens, one at a time, 2 s each, and 4.5 s until the deadline
    const w = setup(2000);
    await w.cached([26, 29, 27, 28]);
    // Act
    const result = await w.scheduled(1).run(w.clock.now() + 4500);
    // Assess: the two oldest (closest to their refresh point) were refreshed, the rest left for the next run
    expect(result).toMatchObject({ refreshed: 2, skipped: 2 });
    expect(w.entra.requests).toHaveLength(2);
    const refreshed = [];
    for (const i of [0, 1, 2, 3]) {
      const key = { service: `svc${i}`, version: `v-svc${i}-1`, scope: GRAPH };
      if (!(await w.cache.get(key))?.accessToken.startsWith('old-')) refreshed.push(i);
    }
    expect(refreshed).toEqual([1, 3]);
  });

  it('keeps the last use of a refreshed token (a refresh is not a use)', async () => {
    const w = setup();
    await w.cached([26]);
    const lastUsed = w.clock.now() - MINUTE;
    await w.scheduled().run(w.clock.now() + MINUTE);
    const token = await w.cache.get({ service: 'svc0', version: 'v-svc0-1', scope: GRAPH });
    expect(token?.accessToken).not.toBe('old-svc0');
    expect(token?.lastUsedAt).toBe(lastUsed);
  });

  it('leaves inactive services alone', async () => {
    const w = setup();
    await w.cached([26]);
    w.registry.services.set('svc0', { ...serviceRecord('svc0'), is_active: false });
    expect(await w.scheduled().run(w.clock.now() + MINUTE)).toMatchObject({ services: 0, refreshed: 0 });
  });
});
