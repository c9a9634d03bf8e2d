import { SecretCache } from '../../lib/secret-cache';
import { ManualClock } from '../fixtures/clock';
import { InMemorySecretStore } from '../fixtures/in-memory';

const ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:broker/svc-AbCdEf';

describe('SecretCache', () => {
  function setup(ttlMs = 60_000) {
    const clock = new ManualClock();
    const store = new InMemorySecretStore();
    store.put(ARN, 'secret');
    return { clock, store, cache: new SecretCache({ secrets: store, ttlMs, now: clock.now }) };
  }
  const reads = (store: InMemorySecretStore) => store.calls.filter((c) => c === 'read').length;

  it('reuses a credential for its TTL, then reads the store again', async () => {
    const { clock, store, cache } = setup();
    await cache.credential(ARN);
    clock.advance(59_999);
    await cache.credential(ARN);
    expect(reads(store)).toBe(1);
    clock.advance(2);
    await cache.credential(ARN);
    expect(reads(store)).toBe(2);
  });

  it('reads the store again when a fresh credential is asked for (after invalid_client)', async () => {
    const { store, cache } = setup();
    await cache.credential(ARN);
    await cache.credential(ARN, { fresh: true });
    expect(reads(store)).toBe(2);
  });

  it('never reuses a credential with a TTL of 0', async () => {
    const { store, cache } = setup(0);
    await cache.credential(ARN);
    await cache.credential(ARN);
    expect(reads(store)).toBe(2);
  });
});
