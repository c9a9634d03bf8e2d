import { NotFoundError } from '../../lib/errors';
import { TokenMemory } from '../../lib/token-memory';
import { aroundCalls, brokerDynamoDb } from '../fixtures/broker-aws';
import { dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { FlowTestBed, ManualClock } from '../fixtures/flow-test-bed';

/**
 * The per-instance memory tier (lib/token-memory.ts) in front of a real flow on DynamoDB Local, with a clock that
 * only moves when the test moves it. DynamoDB calls are observed with a client middleware (the calls themselves
 * go to DynamoDB Local).
 */
describe('the token memory tier', () => {
  let bed: FlowTestBed;
  let n = 0;
  const fresh = () => `mem${++n}`;

  beforeAll(async () => {
    bed = await FlowTestBed.start();
  });
  afterAll(async () => {
    await bed.close();
  });

  /** One instance: a flow on its own DynamoDB client (whose calls are recorded) with the memory tier in front. */
  function instance(clock: ManualClock) {
    const calls: string[] = [];
    const finished: string[] = [];
    const dynamodb = aroundCalls(brokerDynamoDb(dynamoDbLocalEndpoint()), async (command, _input, call) => {
      calls.push(command);
      try {
        return await call();
      } finally {
        finished.push(command);
      }
    });
    const flow = bed.flow({ now: clock.now, dynamodb });
    const memory = new TokenMemory({ source: flow, boundMs: 1000, now: clock.now });
    return { calls, finished, flow, memory };
  }

  it('serves a token it read less than the bound ago without any DynamoDB call or Entra request', async () => {
    const clock = new ManualClock();
    const { calls, memory } = instance(clock);
    const name = fresh();
    await bed.createService(name);
    const first = await memory.getToken(name);
    calls.length = 0;
    const entra = bed.emulator.tokenRequestCount;

    clock.advance(400);
    const hit = await memory.getToken(name);

    expect(hit.cache).toBe('hit');
    expect(hit.token.accessToken).toBe(first.token.accessToken);
    expect(calls).toEqual([]);
    expect(bed.emulator.tokenRequestCount).toBe(entra);
  });

  it('past half the bound, answers from memory at once and re-reads through the flow in the background', async () => {
    const clock = new ManualClock();
    const { finished, memory } = instance(clock);
    const name = fresh();
    await bed.createService(name);
    await memory.getToken(name);
    finished.length = 0;

    clock.advance(600);
    const hit = await memory.getToken(name);
    const finishedWhenAnswered = [...finished];
    await memory.settled();

    expect(hit.cache).toBe('hit');
    expect(finishedWhenAnswered).toEqual([]);
    expect(finished.sort()).toEqual(['GetItemCommand', 'QueryCommand']);
  });

  it('stops serving a token whose cache another instance cleared once the bound has passed', async () => {
    const clock = new ManualClock();
    const mine = instance(clock);
    const other = instance(clock);
    const name = fresh();
    await bed.createService(name);
    const old = await mine.memory.getToken(name);

    await other.memory.clearTokens(name);
    clock.advance(1000);
    const next = await mine.memory.getToken(name);

    expect(next.token.accessToken).not.toBe(old.token.accessToken);
  });

  it('refuses a service another instance deleted once the bound has passed, also after a background re-read', async () => {
    const clock = new ManualClock();
    const { memory } = instance(clock);
    const name = fresh();
    await bed.createService(name);
    await memory.getToken(name);

    await bed.admin.delete(name);
    clock.advance(600);
    await memory.getToken(name);
    await memory.settled();

    await expect(memory.getToken(name)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('drops its own entries at once when it clears a service’s tokens', async () => {
    const clock = new ManualClock();
    const { memory } = instance(clock);
    const name = fresh();
    await bed.createService(name);
    const old = await memory.getToken(name);

    await memory.clearTokens(name);
    const next = await memory.getToken(name);

    expect(next.token.accessToken).not.toBe(old.token.accessToken);
  });

  it('with a bound of 0, reads through the flow every time', async () => {
    const clock = new ManualClock();
    const { calls, flow } = instance(clock);
    const memory = new TokenMemory({ source: flow, boundMs: 0, now: clock.now });
    const name = fresh();
    await bed.createService(name);
    await memory.getToken(name);
    calls.length = 0;

    await memory.getToken(name);

    expect(calls.sort()).toEqual(['GetItemCommand', 'QueryCommand']);
  });
});
