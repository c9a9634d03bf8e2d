import { FlowTestBed, GRAPH, ManualClock, VAULT } from '../fixtures/flow-test-bed';

/**
 * The scheduled refresh (functions/refresh.ts → ScheduledRefresh): tokens that callers used
 * recently and that reach their refresh point within the horizon are refreshed ahead, so callers hit the cache.
 */
describe('scheduled refresh of recently used tokens', () => {
  let bed: FlowTestBed;
  const HORIZON = 6 * 60_000;
  const USED_WITHIN = 60 * 60_000;

  beforeAll(async () => {
    // 3600 s tokens refreshed at half-life: the refresh point is 30 minutes after issue.
    bed = await FlowTestBed.start({ emulator: { tokenLifetimeSeconds: 3600 } });
  });
  afterAll(async () => {
    await bed.close();
  });

  it('refreshes a used token whose refresh point falls within the horizon, and callers then get the new token', async () => {
    const clock = new ManualClock();
    const flow = bed.flow({ now: clock.now });
    await bed.createService('due');
    const first = await flow.getToken('due');
    clock.advance(26 * 60_000); // refresh point in 4 minutes: within the 6-minute horizon
    const before = bed.emulator.tokenRequestCount;

    const outcomes = await bed
      .scheduledRefresh(flow, { now: clock.now, horizonMs: HORIZON, usedWithinMs: USED_WITHIN })
      .refreshService('due');

    expect(outcomes).toEqual({ [GRAPH]: 'refreshed' });
    expect(bed.emulator.tokenRequestCount - before).toBe(1);
    const next = await flow.getToken('due');
    expect(next.cache).toBe('hit');
    expect(next.token.accessToken).not.toBe(first.token.accessToken);
  });

  it('leaves a token alone whose refresh point is beyond the horizon', async () => {
    const clock = new ManualClock();
    const flow = bed.flow({ now: clock.now });
    await bed.createService('fresh');
    await flow.getToken('fresh');
    clock.advance(10 * 60_000);
    const before = bed.emulator.tokenRequestCount;

    expect(
      await bed
        .scheduledRefresh(flow, { now: clock.now, horizonMs: HORIZON, usedWithinMs: USED_WITHIN })
        .refreshService('fresh'),
    ).toEqual({ [GRAPH]: 'fresh' });
    expect(bed.emulator.tokenRequestCount).toBe(before);
  });

  it('does not keep tokens alive that nobody used within the window, nor fetch scopes never requested', async () => {
    const clock = new ManualClock();
    const flow = bed.flow({ now: clock.now });
    await bed.createService('idle', { scopes: [GRAPH, VAULT] });
    await flow.getToken('idle');
    // Make it "used" long ago: a scheduler looking 2 hours later, with a token still valid (long lifetime).
    bed.emulator.setTokenLifetime(5 * 3600);
    await flow.getToken('idle', { forceRefresh: true });
    bed.emulator.setTokenLifetime(3600);
    clock.advance(2 * 3600_000);
    const before = bed.emulator.tokenRequestCount;

    const outcomes = await bed
      .scheduledRefresh(flow, { now: clock.now, horizonMs: HORIZON, usedWithinMs: USED_WITHIN })
      .refreshService('idle');

    expect(outcomes).toEqual({ [GRAPH]: 'unused', [VAULT]: 'not-cached' });
    expect(bed.emulator.tokenRequestCount).toBe(before);
  });

  it('counts a cache hit as use: a token served recently is refreshed even though it was issued long ago', async () => {
    const clock = new ManualClock();
    const flow = bed.flow({ now: clock.now, settings: { touchIntervalMs: 60_000 } });
    bed.emulator.setTokenLifetime(3 * 3600);
    await bed.createService('busy');
    await flow.getToken('busy');
    bed.emulator.setTokenLifetime(3600);
    clock.advance(80 * 60_000); // issued 80 min ago (refresh point at 90 min), last used now:
    await flow.getToken('busy');
    await flow.settled(); // the last_used_at write runs in the background
    const before = bed.emulator.tokenRequestCount;

    expect(
      await bed
        .scheduledRefresh(flow, { now: clock.now, horizonMs: 15 * 60_000, usedWithinMs: USED_WITHIN })
        .refreshService('busy'),
    ).toEqual({ [GRAPH]: 'refreshed' });
    expect(bed.emulator.tokenRequestCount - before).toBe(1);
  });
});
