import type { ClientCredentialsFlow } from '../../lib/client-credentials-flow';
import { type DynamoDbLocal, startDynamoDbLocal } from '../fixtures/dynamodb-local';
import {
  FlowTestBed,
  GRAPH,
  ManualClock,
  runtimeLikeDynamoDbClient,
  STORAGE,
  VAULT,
} from '../fixtures/flow-test-bed';

/**
 * Serving tokens while DynamoDB is down. Each describe runs its own DynamoDB Local (not the one shared by the jest
 * run) so that it can be stopped; the flows use a DynamoDB client built like functions/runtime.ts builds it
 * (two attempts, short timeouts), so that every failing call fails fast.
 */

describe('with DynamoDB stopped after tokens were cached', () => {
  const name = 'outage';
  const clock = new ManualClock();
  let ddb: DynamoDbLocal;
  let bed: FlowTestBed;
  /** The instance that fetched the GRAPH token from Entra. */
  let fetcher: ClientCredentialsFlow;
  /** Another instance that only read that token from the DynamoDB cache. */
  let reader: ClientCredentialsFlow;
  let cachedToken: string;

  /** Entra requests made while `act` ran. */
  async function entraRequestsDuring(act: () => Promise<unknown>): Promise<number> {
    const before = bed.emulator.tokenRequestCount;
    await act();
    return bed.emulator.tokenRequestCount - before;
  }

  beforeAll(async () => {
    ddb = await startDynamoDbLocal();
    bed = await FlowTestBed.start({ dynamoDbEndpoint: ddb.endpoint });
    await bed.createService(name, { scopes: [GRAPH, VAULT, STORAGE] });
    fetcher = bed.flow({ now: clock.now, dynamodb: runtimeLikeDynamoDbClient(ddb.endpoint) });
    reader = bed.flow({ now: clock.now, dynamodb: runtimeLikeDynamoDbClient(ddb.endpoint) });
    const fetched = await fetcher.getToken(name);
    const read = await reader.getToken(name);
    if (fetched.cache !== 'miss' || read.cache !== 'hit') throw new Error('warm-up did not go as planned');
    cachedToken = fetched.token.accessToken;
    await ddb.stop();
  }, 60_000);
  afterAll(async () => {
    await ddb.stop();
    await bed.close();
  });

  it('keeps serving the token this instance fetched, from process memory, without asking Entra', async () => {
    let token: string | undefined;
    const requests = await entraRequestsDuring(async () => {
      token = (await fetcher.getToken(name)).token.accessToken;
    });
    expect(requests).toBe(0);
    expect(token).toBe(cachedToken);
  });

  it('keeps serving the token this instance read from the DynamoDB cache, without asking Entra', async () => {
    let token: string | undefined;
    const requests = await entraRequestsDuring(async () => {
      token = (await reader.getToken(name)).token.accessToken;
    });
    expect(requests).toBe(0);
    expect(token).toBe(cachedToken);
  });

  it('fetches a scope nobody cached directly from Entra, once for all concurrent callers', async () => {
    let tokens: string[] = [];
    const requests = await entraRequestsDuring(async () => {
      const results = await Promise.all(
        Array.from({ length: 8 }, () => fetcher.getToken(name, { scope: VAULT })),
      );
      tokens = results.map((r) => r.token.accessToken);
    });
    expect(requests).toBe(1);
    expect(new Set(tokens).size).toBe(1);
    expect(tokens[0]).toBe(bed.emulator.issuedTokens.at(-1));
  });

  it('serves a token fetched directly during the outage from process memory afterwards', async () => {
    const first = await fetcher.getToken(name, { scope: STORAGE });
    let again: string | undefined;
    const requests = await entraRequestsDuring(async () => {
      again = (await fetcher.getToken(name, { scope: STORAGE })).token.accessToken;
    });
    expect(requests).toBe(0);
    expect(again).toBe(first.token.accessToken);
  });
});

describe('when DynamoDB stops while a request waits for another instance’s lease', () => {
  const name = 'outage-waiting';
  const clock = new ManualClock();
  let ddb: DynamoDbLocal;
  let bed: FlowTestBed;

  beforeAll(async () => {
    ddb = await startDynamoDbLocal();
    bed = await FlowTestBed.start({ dynamoDbEndpoint: ddb.endpoint });
    await bed.createService(name);
  }, 60_000);
  afterAll(async () => {
    await ddb.stop();
    await bed.close();
  });

  it('fetches the token directly from Entra instead of failing', async () => {
    // Prepare: another instance holds the lease (and will never write a token); DynamoDB stops at the first poll
    await bed.coordinator(clock.now).acquire(await bed.cacheKey(name), 'other-instance', 60_000);
    const flow = bed.flow({
      now: clock.now,
      dynamodb: runtimeLikeDynamoDbClient(ddb.endpoint),
      sleep: async (ms) => {
        clock.advance(ms);
        await ddb.stop();
      },
      settings: { leaseWaitMs: 1000, leasePollMs: 100 },
    });
    const before = bed.emulator.tokenRequestCount;
    // Act
    const result = await flow.getToken(name);
    // Assess
    expect(bed.emulator.tokenRequestCount - before).toBe(1);
    expect(result.token.accessToken).toBe(bed.emulator.issuedTokens.at(-1));
  });
});
