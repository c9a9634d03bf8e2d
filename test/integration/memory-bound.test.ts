import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { DEFAULT_MEMORY_BOUND_MS } from '../../lib/token-memory';
import { BrokerHarness } from '../fixtures/broker-harness';
import { BrokerProcess, sameDeploymentAs } from '../fixtures/broker-process';

/**
 * The per-instance memory tier's promise (lib/token-memory.ts, README "Performance"), across two `npm start`
 * processes that share DynamoDB Local, Secrets Manager and KMS like two Lambda instances: once a change is made
 * through one of them (the cached tokens cleared, the service PATCHed, its secret rotated, the service deleted),
 * neither serves the token it had cached before for longer than the documented bound. Both processes run with the
 * production default bound; each test first makes both serve the same token, so both hold it in memory.
 */
describe('every instance stops serving the old token within the memory bound', () => {
  let h: BrokerHarness;
  let a: BrokerProcess;
  let b: BrokerProcess;
  let n = 0;
  const fresh = () => `bound${++n}`;

  beforeAll(async () => {
    h = await BrokerHarness.start();
    [a, b] = await Promise.all([
      BrokerProcess.start({ env: sameDeploymentAs(h) }),
      BrokerProcess.start({ env: sameDeploymentAs(h) }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await h?.close();
  });

  /** A new service served by both processes with the same token; returns that token. */
  async function servedByBoth(name: string, config: Record<string, unknown> = {}): Promise<string> {
    const created = await a.request('POST', '/api/v2/system/service', {
      body: h.serviceBody(name, {}, config),
    });
    expect(created.status).toBe(201);
    const fromA = await a.token('GET', name);
    const fromB = await b.token('GET', name);
    expect(fromA.status).toBe(200);
    expect(fromB.body.access_token).toBe(fromA.body.access_token);
    // Served again, now from each process's memory.
    expect((await b.token('GET', name)).body.access_token).toBe(fromA.body.access_token);
    return fromA.body.access_token as string;
  }

  /** Lets the documented bound pass after a change has been answered. */
  const boundPassed = () => delay(DEFAULT_MEMORY_BOUND_MS + 50);

  it('after DELETE of the cached tokens on one instance, neither serves the old token', async () => {
    const name = fresh();
    const old = await servedByBoth(name);

    expect((await a.token('DELETE', name)).status).toBe(200);
    await boundPassed();

    for (const broker of [b, a]) {
      const res = await broker.token('GET', name);
      expect(res.status).toBe(200);
      expect(res.body.access_token).not.toBe(old);
    }
  });

  it('after a PATCH of the service on one instance, neither serves the old token', async () => {
    const name = fresh();
    const old = await servedByBoth(name);

    const patched = await a.request('PATCH', `/api/v2/system/service/${name}`, {
      body: { label: 'changed' },
    });
    expect(patched.status).toBe(200);
    await boundPassed();

    for (const broker of [b, a]) {
      const res = await broker.token('GET', name);
      expect(res.status).toBe(200);
      expect(res.body.access_token).not.toBe(old);
    }
  });

  it('after the secret is rotated on one instance, neither serves the token got with the old secret', async () => {
    const name = fresh();
    const clientId = randomUUID();
    const secret = `secret-${randomUUID()}`;
    h.emulator.registerApp({ tenantId: h.tenantId, clientId, clientSecrets: [secret] });
    const old = await servedByBoth(name, { client_id: clientId, client_secret: secret });

    const next = `secret-${randomUUID()}`;
    h.emulator.setClientSecrets(clientId, [next]);
    const rotated = await a.request('PATCH', `/api/v2/system/service/${name}`, {
      body: { config: { client_secret: next } },
    });
    expect(rotated.status).toBe(200);
    await boundPassed();

    for (const broker of [b, a]) {
      const res = await broker.token('GET', name);
      expect(res.status).toBe(200);
      expect(res.body.access_token).not.toBe(old);
    }
  });

  it('after the service is deleted on one instance, both answer 404', async () => {
    const name = fresh();
    await servedByBoth(name);

    expect((await a.request('DELETE', `/api/v2/system/service/${name}`)).status).toBe(200);
    await boundPassed();

    for (const broker of [b, a]) {
      const res = await broker.token('GET', name);
      expect(res.status).toBe(404);
      expect(res.body.access_token).toBeUndefined();
    }
  });

  it('after the service is switched off on one instance, both refuse it', async () => {
    const name = fresh();
    await servedByBoth(name);

    const off = await a.request('PATCH', `/api/v2/system/service/${name}`, { body: { is_active: false } });
    expect(off.status).toBe(200);
    await boundPassed();

    for (const broker of [b, a]) {
      const res = await broker.token('GET', name);
      expect(res.status).toBe(403);
      expect(res.body.access_token).toBeUndefined();
    }
  });
});
