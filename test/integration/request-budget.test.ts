import { DeadlineExceededError } from '../../lib/errors';
import { BlackHole } from '../fixtures/black-hole';
import { dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import {
  FlowTestBed,
  GRAPH,
  ManualClock,
  recordingSleep,
  runtimeLikeDynamoDbClient,
  VAULT,
} from '../fixtures/flow-test-bed';
import { rejectionOf } from '../fixtures/rejection';

/**
 * A token request has a budget, passed into lib as data (issue 9 §1): the handler's AbortSignal and deadline
 * (functions/request-budget.ts). Every AWS call of the request stops when the budget runs out, lease waits and
 * Entra retries end with it, and Entra is not asked once it is spent. Over DynamoDB Local (behind a black hole
 * proxy where DynamoDB must hang), the embedded Secrets Manager server and the Entra emulator; waits go through an
 * injected clock.
 */

let bed: FlowTestBed;
let n = 0;
const fresh = () => `budget${++n}`;

beforeAll(async () => {
  bed = await FlowTestBed.start();
});
afterAll(async () => {
  await bed.close();
});
afterEach(() => {
  bed.emulator.clearFaults();
});

describe('with DynamoDB hanging', () => {
  let hole: BlackHole;
  beforeEach(async () => {
    hole = await BlackHole.start(dynamoDbLocalEndpoint());
  });
  afterEach(async () => {
    await hole.close();
  });

  /** A flow instance whose DynamoDB goes through the hole, warmed up with the service's GRAPH token. */
  async function warmInstance(name: string) {
    await bed.createService(name, { scopes: [GRAPH, VAULT] });
    const flow = bed.flow({ dynamodb: runtimeLikeDynamoDbClient(hole.url) });
    const warm = await flow.getToken(name);
    hole.silence();
    return { flow, token: warm.token.accessToken };
  }

  it('serves the token the instance knows as soon as the budget runs out, one attempt per call', async () => {
    // Prepare: the budget runs out as soon as DynamoDB has swallowed the request's first call
    const name = fresh();
    const { flow, token } = await warmInstance(name);
    const budget = new AbortController();
    void hole.nextSwallowed().then(() => budget.abort());
    // Act
    const result = await flow.getToken(name, { signal: budget.signal });
    // Assess: the service read and the cache read each made one attempt (the abort stops the SDK's retry)
    expect(result.token.accessToken).toBe(token);
    expect(hole.swallowedRequests).toBeLessThanOrEqual(2);
  });

  it('does not ask Entra for a token it does not know once the budget is spent', async () => {
    // Prepare
    const name = fresh();
    const { flow } = await warmInstance(name);
    const budget = new AbortController();
    void hole.nextSwallowed().then(() => budget.abort());
    const before = bed.emulator.tokenRequestCount;
    // Act
    const error = await rejectionOf(flow.getToken(name, { scope: VAULT, signal: budget.signal }));
    // Assess
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect(bed.emulator.tokenRequestCount).toBe(before);
  });
});

describe('with the deadline before the end of a lease wait', () => {
  it('stops waiting for another instance at the deadline and does not ask Entra', async () => {
    // Prepare: another instance holds the lease and never writes a token; the request has 1 s left
    const name = fresh();
    await bed.createService(name);
    const clock = new ManualClock();
    await bed.coordinator(clock.now).acquire(await bed.cacheKey(name), 'other-instance', 60_000);
    const { sleep, waits } = recordingSleep(clock);
    const flow = bed.flow({ now: clock.now, sleep, settings: { leaseWaitMs: 5000, leasePollMs: 100 } });
    const before = bed.emulator.tokenRequestCount;
    // Act
    const error = await rejectionOf(flow.getToken(name, { deadline: clock.now() + 1000 }));
    // Assess
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect(waits.reduce((a, b) => a + b, 0)).toBe(1000);
    expect(bed.emulator.tokenRequestCount).toBe(before);
  });
});

describe('with Entra failing and the deadline before the end of the retry budget', () => {
  it('retries only until the request’s deadline', async () => {
    // Prepare: Entra answers 500 every time; the retry budget is 12 s but the request has 1.5 s
    const name = fresh();
    await bed.createService(name);
    const clock = new ManualClock();
    const { sleep, waits } = recordingSleep(clock);
    const flow = bed.flow({ now: clock.now, sleep, random: () => 1, settings: { retryBudgetMs: 12_000 } });
    bed.emulator.failNext({ kind: 'html500' }, 20);
    // Act
    await rejectionOf(flow.getToken(name, { deadline: clock.now() + 1500 }));
    // Assess: every wait ended before the deadline
    expect(waits.reduce((a, b) => a + b, 0)).toBeLessThan(1500);
  });
});
