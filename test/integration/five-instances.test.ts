import { BrokerHarness } from '../fixtures/broker-harness';
import { BrokerProcess, sameDeploymentAs } from '../fixtures/broker-process';

/**
 * Five broker processes of one deployment (as five Lambda instances: same tables, secrets and key) missing the
 * same token at once ask Entra once, also when Entra is slow or throttles: the waiters follow the lease holder
 * instead of giving up after a fixed wait, and a Retry-After longer than a request can wait is shared.
 */
describe('five broker processes missing the same token at once', () => {
  let h: BrokerHarness;
  let brokers: BrokerProcess[] = [];
  let n = 0;
  const fresh = () => `five${++n}`;

  beforeAll(async () => {
    h = await BrokerHarness.start();
    brokers = await Promise.all(
      Array.from({ length: 5 }, () => BrokerProcess.start({ env: sameDeploymentAs(h) })),
    );
  }, 120_000);
  afterAll(async () => {
    await Promise.all(brokers.map((b) => b.stop()));
    await h.close();
  });
  afterEach(() => {
    h.emulator.setLatency(0);
    h.emulator.clearFaults();
  });

  it('asks Entra once although Entra takes 6 s to answer, and all five serve its token', async () => {
    // Prepare
    const name = fresh();
    await h.createService(name);
    h.emulator.setLatency(6000);
    const before = h.emulator.tokenRequestCount;
    // Act
    const results = await Promise.all(brokers.map((b) => b.token('GET', name)));
    // Assess
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(h.emulator.tokenRequestCount - before).toBe(1);
    expect(new Set(results.map((r) => r.body.access_token)).size).toBe(1);
  });

  it('asks Entra once when it throttles for longer than a request can wait: all five answer 503 with Retry-After', async () => {
    // Prepare
    const name = fresh();
    await h.createService(name);
    h.emulator.failNext({ kind: 'throttle', retryAfterSeconds: 120 });
    const before = h.emulator.tokenRequestCount;
    // Act: everyone at once, then everyone again
    const first = await Promise.all(brokers.map((b) => b.token('GET', name)));
    const again = await Promise.all(brokers.map((b) => b.token('GET', name)));
    // Assess
    expect(h.emulator.tokenRequestCount - before).toBe(1);
    for (const res of [...first, ...again]) {
      expect(res.status).toBe(503);
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(120);
    }
  });
});
