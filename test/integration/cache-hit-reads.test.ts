import { aroundCalls } from '../fixtures/broker-aws';
import { dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { FlowTestBed, runtimeLikeDynamoDbClient } from '../fixtures/flow-test-bed';

/**
 * What a cache hit costs in DynamoDB: the service and the service's cached items are read at the same time
 * (one round trip), and nothing else. Observed with a client middleware that records when each call starts and
 * ends (the calls themselves go to DynamoDB Local).
 */
describe('a cache hit', () => {
  let bed: FlowTestBed;

  beforeAll(async () => {
    bed = await FlowTestBed.start();
  });
  afterAll(async () => {
    await bed.close();
  });

  it('reads the service and its cached token concurrently, with two DynamoDB calls and no Entra request', async () => {
    const events: string[] = [];
    const client = runtimeLikeDynamoDbClient(dynamoDbLocalEndpoint());
    const dynamodb = aroundCalls(client, async (command, _input, call) => {
      events.push(`start ${command}`);
      try {
        return await call();
      } finally {
        events.push(`end ${command}`);
      }
    });
    const flow = bed.flow({ dynamodb, settings: { touchIntervalMs: Number.MAX_SAFE_INTEGER } });
    await bed.createService('hit');
    await flow.getToken('hit');
    events.length = 0;
    const before = bed.emulator.tokenRequestCount;

    const hit = await flow.getToken('hit');

    expect(hit.cache).toBe('hit');
    expect(bed.emulator.tokenRequestCount).toBe(before);
    expect(events).toHaveLength(4);
    client.destroy();
    expect(events.slice(0, 2).sort()).toEqual(['start GetItemCommand', 'start QueryCommand']);
  });
});
