import { setTimeout as delay } from 'node:timers/promises';
import type { Context } from 'aws-lambda';
import type { ClientCredentialsFlow } from '../../lib/client-credentials-flow';
import type { ScheduledRunResult } from '../../lib/scheduled-refresh';
import { localLambdaContext } from '../../local/apigw-event';
import { aroundCalls } from '../fixtures/broker-aws';
import { BrokerHarness } from '../fixtures/broker-harness';
import { FLOW_START, FlowTestBed, GRAPH, ManualClock, VAULT } from '../fixtures/flow-test-bed';

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

  /** One scheduled run for one service (functions/refresh.ts runs this for every due service). */
  const refreshDue = (flow: ClientCredentialsFlow, clock: ManualClock, name: string, horizonMs = HORIZON) =>
    bed.scheduledRefresh(flow, { now: clock.now, horizonMs, usedWithinMs: USED_WITHIN }).refreshService(name);

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

  it('keeps a token requested once alive only until its usage window ends (a refresh is not a use)', async () => {
    // Prepare: one request, then a scheduled run every 5 minutes for 8 hours
    const clock = new ManualClock();
    const flow = bed.flow({ now: clock.now });
    await bed.createService('once');
    await flow.getToken('once');
    const before = bed.emulator.tokenRequestCount;
    // Act
    const refreshedAtMinute: number[] = [];
    for (let minute = 5; minute <= 8 * 60; minute += 5) {
      clock.set(FLOW_START + minute * 60_000);
      if ((await refreshDue(flow, clock, 'once'))[GRAPH] === 'refreshed') refreshedAtMinute.push(minute);
    }
    // Assess: refreshed while in use (the 60-minute window), never after
    expect(refreshedAtMinute).toEqual([25, 50]);
    expect(bed.emulator.tokenRequestCount - before).toBe(2);
  });

  it('does not refresh a token that another instance refreshed after the run read it (read again under the lease)', async () => {
    // Prepare: a due token; just before the run takes the lease, another instance refreshes the token
    const clock = new ManualClock();
    await bed.createService('raced');
    await bed.flow({ now: clock.now }).getToken('raced');
    clock.advance(26 * 60_000);
    const other = bed.flow({ now: clock.now });
    let raced = false;
    const client = aroundCalls(bed.dynamodb, async (command, input, call) => {
      const isLeaseWrite = command === 'PutItemCommand' && JSON.stringify(input).includes('lease');
      if (isLeaseWrite && !raced) {
        raced = true;
        await other.getToken('raced', { forceRefresh: true });
      }
      return call();
    });
    const flow = bed.flow({ now: clock.now, dynamodb: client });
    const before = bed.emulator.tokenRequestCount;
    // Act
    const outcomes = await refreshDue(flow, clock, 'raced');
    // Assess: only the other instance's request reached Entra
    expect(raced).toBe(true);
    expect(outcomes).toEqual({ [GRAPH]: 'fresh' });
    expect(bed.emulator.tokenRequestCount - before).toBe(1);
  });
});

describe('the scheduled refresh function with a slow Entra', () => {
  const SERVICES = 8;
  const ENTRA_LATENCY_MS = 3000;
  let h: BrokerHarness;
  let handler: (event: unknown, context: Context) => Promise<ScheduledRunResult>;

  beforeAll(async () => {
    // Every token is due at once: its refresh point (30 min) is inside a 40-minute horizon.
    h = await BrokerHarness.start({ env: { TOKEN_BROKER_REFRESH_HORIZON_MS: String(40 * 60_000) } });
    jest.isolateModules(() => {
      handler = require('../../functions/refresh').handler;
    });
  });
  afterAll(async () => {
    h.emulator.setLatency(0);
    await h.close();
  });

  it('reaches every due service before the function times out (refreshes run side by side)', async () => {
    // Prepare: services whose tokens callers use; Entra then takes 3 s per request
    const names = Array.from({ length: SERVICES }, (_, i) => `slow${i}`);
    for (const name of names) {
      await h.createService(name);
      expect((await h.token('GET', name)).status).toBe(200);
    }
    h.emulator.setLatency(ENTRA_LATENCY_MS);
    const before = h.emulator.tokenRequestCount;
    // Act: a run with 20 s left before the Lambda timeout (one after another would need 24 s of Entra time)
    const timeoutMs = 20_000;
    const run = handler({}, localLambdaContext('token-broker-refresh', timeoutMs));
    const timer = new AbortController();
    const timedOut = delay(timeoutMs, 'timed out' as const, { signal: timer.signal }).catch(() => 'ended');
    const outcome = await Promise.race([run, timedOut]);
    timer.abort();
    await run;
    // Assess
    expect(outcome).toEqual({ services: SERVICES, refreshed: SERVICES, failed: 0, skipped: 0 });
    expect(h.emulator.tokenRequestCount - before).toBe(SERVICES);
  });
});
