import type { ClientCredentialsFlow } from '../../lib/client-credentials-flow';
import { NotFoundError, ServiceInactiveError, StoreError } from '../../lib/errors';
import { dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { FlowTestBed, ManualClock, runtimeLikeDynamoDbClient } from '../fixtures/flow-test-bed';
import { SwitchableProxy } from '../fixtures/switchable-proxy';

/**
 * A warm instance remembers the services and tokens it last read, to keep serving while DynamoDB fails. What it
 * remembers must never outlive what the table says: a service deleted or switched off (an operator's emergency
 * stop) stays that way during a later outage, and a remembered service is used for at most 5 minutes.
 * The instance reaches DynamoDB Local through a proxy that the tests cut.
 */
describe('what an instance remembers of a service during a DynamoDB outage', () => {
  let bed: FlowTestBed;
  let n = 0;
  const fresh = () => `gone${++n}`;

  beforeAll(async () => {
    bed = await FlowTestBed.start();
  });
  afterAll(async () => {
    await bed.close();
  });

  /** An instance behind its own proxy, on a manual clock, that has served one token of a new service. */
  async function warmInstance(): Promise<{
    name: string;
    flow: ClientCredentialsFlow;
    proxy: SwitchableProxy;
    clock: ManualClock;
    served: string;
  }> {
    const name = fresh();
    await bed.createService(name);
    const proxy = await SwitchableProxy.start(dynamoDbLocalEndpoint());
    const clock = new ManualClock();
    const flow = bed.flow({ now: clock.now, dynamodb: runtimeLikeDynamoDbClient(proxy.url) });
    const served = (await flow.getToken(name)).token.accessToken;
    return { name, flow, proxy, clock, served };
  }

  /** What getToken settled with: the token served, or the error. */
  async function outcomeOf(promise: Promise<{ token: { accessToken: string } }>): Promise<string | unknown> {
    try {
      return (await promise).token.accessToken;
    } catch (error) {
      return error;
    }
  }

  it('keeps serving a remembered token while the service is unchanged (the outage fallback still works)', async () => {
    const { name, flow, proxy, served } = await warmInstance();
    proxy.cut();
    try {
      expect(await outcomeOf(flow.getToken(name))).toBe(served);
    } finally {
      await proxy.close();
    }
  });

  it('does not serve the token of a service deleted since, when DynamoDB then fails', async () => {
    // Prepare: the instance learns that the service is gone
    const { name, flow, proxy, served } = await warmInstance();
    await bed.admin.delete(name);
    await expect(flow.getToken(name)).rejects.toBeInstanceOf(NotFoundError);
    const before = bed.emulator.tokenRequestCount;
    // Act
    proxy.cut();
    const outcome = await outcomeOf(flow.getToken(name));
    await proxy.close();
    // Assess: the store's failure, not the deleted service's token; and Entra was not asked either
    expect(outcome).not.toBe(served);
    expect(outcome).toBeInstanceOf(StoreError);
    expect(bed.emulator.tokenRequestCount).toBe(before);
  });

  it('does not serve the token of a service switched off since, when DynamoDB then fails', async () => {
    // Prepare
    const { name, flow, proxy, served } = await warmInstance();
    await bed.admin.update(name, { is_active: false });
    await expect(flow.getToken(name)).rejects.toBeInstanceOf(ServiceInactiveError);
    const before = bed.emulator.tokenRequestCount;
    // Act
    proxy.cut();
    const outcome = await outcomeOf(flow.getToken(name));
    await proxy.close();
    // Assess
    expect(outcome).not.toBe(served);
    expect(outcome).toBeInstanceOf(StoreError);
    expect(bed.emulator.tokenRequestCount).toBe(before);
  });

  it('uses a remembered service for at most 5 minutes after it was last read', async () => {
    // Prepare
    const { name, flow, proxy, clock, served } = await warmInstance();
    proxy.cut();
    try {
      clock.advance(5 * 60_000 - 1000);
      expect(await outcomeOf(flow.getToken(name))).toBe(served);
      // Act
      clock.advance(2000);
      const outcome = await outcomeOf(flow.getToken(name));
      // Assess
      expect(outcome).toBeInstanceOf(StoreError);
    } finally {
      await proxy.close();
    }
  });
});
