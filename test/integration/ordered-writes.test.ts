import { setTimeout as delay } from 'node:timers/promises';
import { IdentityProviderError, IdentityProviderUnavailableError } from '../../lib/errors';
import { FLOW_START, FlowTestBed, ManualClock } from '../fixtures/flow-test-bed';

/**
 * Token writes never go backwards: an instance that lost its lease, was frozen mid-refresh, or refreshed while
 * the cache was being cleared never leaves an older token in the cache than the one already there, and clearing
 * the cache never lifts a cool-down or a throttle. Over DynamoDB Local and the Entra emulator; the "pauses" are the
 * emulator's latency and a manual clock moved while a request is in flight.
 */
const LIFETIME_S = 3599;

describe('writes never go backwards', () => {
  let bed: FlowTestBed;
  let n = 0;
  const fresh = () => `ow${++n}`;

  beforeAll(async () => {
    bed = await FlowTestBed.start({ emulator: { tokenLifetimeSeconds: LIFETIME_S } });
  });
  afterAll(async () => {
    await bed.close();
  });
  afterEach(() => {
    bed.emulator.setLatency(0);
    bed.emulator.clearFaults();
  });

  /** Waits (real time, bounded) until the emulator has received `count` token requests in total. */
  async function untilEntraRequests(count: number): Promise<void> {
    for (let i = 0; i < 500 && bed.emulator.tokenRequestCount < count; i++) await delay(10);
    if (bed.emulator.tokenRequestCount < count) throw new Error('Entra request did not arrive within 5 s');
  }

  /** What a new instance (nothing in memory) is served now, and whether Entra had to be asked for it. */
  async function servedToNewInstance(name: string, clock: ManualClock) {
    const before = bed.emulator.tokenRequestCount;
    const result = await bed.flow({ now: clock.now }).getToken(name);
    return { token: result.token.accessToken, asked: bed.emulator.tokenRequestCount - before };
  }

  it('refuses the write of a holder whose lease was taken over by an instance that wrote a newer token', async () => {
    // Prepare: A asks Entra (slowly) under the lease; its lease expires; B takes over and stores a newer token
    const name = fresh();
    await bed.createService(name);
    const clock = new ManualClock();
    const a = bed.flow({ now: clock.now });
    bed.emulator.setLatency(1500);
    const before = bed.emulator.tokenRequestCount;
    const slowA = a.getToken(name);
    await untilEntraRequests(before + 1);
    bed.emulator.setLatency(0);
    clock.advance(20_000); // past A's 15 s lease
    const fromB = (await bed.flow({ now: clock.now }).getToken(name)).token.accessToken;
    // Act: A's Entra answer arrives and A writes its (older) token
    const fromA = (await slowA).token.accessToken;
    // Assess: the cache still holds B's newer token
    expect(fromA).not.toBe(fromB);
    const served = await servedToNewInstance(name, clock);
    expect(served).toEqual({ token: fromB, asked: 0 });
  });

  it('does not let a refresh that asked Entra before a clear refill the cleared cache', async () => {
    // Prepare: a cached token; A's refresh is in flight when the caller clears the cache
    const name = fresh();
    await bed.createService(name);
    const clock = new ManualClock();
    const a = bed.flow({ now: clock.now });
    await a.getToken(name);
    bed.emulator.setLatency(1000);
    const before = bed.emulator.tokenRequestCount;
    const forced = a.getToken(name, { forceRefresh: true });
    await untilEntraRequests(before + 1);
    bed.emulator.setLatency(0);
    clock.advance(1000);
    await bed.flow({ now: clock.now }).clearTokens(name);
    // Act
    const beforeClear = (await forced).token.accessToken;
    // Assess: the next caller gets a token asked for after the clear, not the one from before it
    const served = await servedToNewInstance(name, clock);
    expect(served.asked).toBe(1);
    expect(served.token).not.toBe(beforeClear);
  });

  it('keeps the cool-down through a clear: DELETE then GET does not ask Entra again', async () => {
    // Prepare: Entra refused the service (wrong secret): a cool-down is running
    const app = bed.newApp();
    const name = fresh();
    await bed.createService(name, { app, clientSecret: 'not-the-secret-entra-knows' });
    const clock = new ManualClock();
    const flow = bed.flow({ now: clock.now });
    await expect(flow.getToken(name)).rejects.toBeInstanceOf(IdentityProviderError);
    const before = bed.emulator.tokenRequestCount;
    // Act
    await flow.clearTokens(name);
    const error = await flow.getToken(name).catch((e: unknown) => e);
    // Assess
    expect(bed.emulator.tokenRequestCount).toBe(before);
    expect(error).toBeInstanceOf(IdentityProviderError);
    expect((error as IdentityProviderError).context).toHaveProperty('cooldown_until');
  });

  it('keeps Entra’s throttle through a clear: DELETE then GET does not ask Entra again', async () => {
    // Prepare: Entra asked for a pause longer than the retry budget
    const name = fresh();
    await bed.createService(name);
    const clock = new ManualClock();
    const flow = bed.flow({ now: clock.now });
    bed.emulator.failNext({ kind: 'throttle', retryAfterSeconds: 600 });
    await expect(flow.getToken(name)).rejects.toBeInstanceOf(IdentityProviderUnavailableError);
    const before = bed.emulator.tokenRequestCount;
    // Act
    await flow.clearTokens(name);
    const error = await flow.getToken(name).catch((e: unknown) => e);
    // Assess
    expect(bed.emulator.tokenRequestCount).toBe(before);
    expect(error).toBeInstanceOf(IdentityProviderUnavailableError);
  });

  it('completes a refresh-ahead frozen mid-request (Lambda between invocations) once it resumes', async () => {
    // Prepare: a cached token past its refresh point; the refresh-ahead's Entra request hangs
    const name = fresh();
    await bed.createService(name);
    const clock = new ManualClock();
    const flow = bed.flow({ now: clock.now, entraTimeoutMs: 300 });
    const cached = (await flow.getToken(name)).token.accessToken;
    clock.set(FLOW_START + (LIFETIME_S / 2 + 1) * 1000);
    bed.emulator.failNext({ kind: 'hang' });
    const before = bed.emulator.tokenRequestCount;
    const hit = await flow.getToken(name); // starts the refresh-ahead
    await untilEntraRequests(before + 1);
    // Act: the process is frozen for 10 minutes while the request is in flight, then resumes
    clock.advance(10 * 60_000);
    await flow.settled();
    // Assess: the refresh did not give up on the budget it had before the freeze; its token is the one cached
    expect(hit.token.accessToken).toBe(cached);
    const served = await servedToNewInstance(name, clock);
    expect(served.asked).toBe(0);
    expect(served.token).not.toBe(cached);
    expect(served.token).toBe(bed.emulator.issuedTokens.at(-1));
  });
});
