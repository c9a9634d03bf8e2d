import { apiGatewayEvent } from '../fixtures/apigw-event';
import { BlackHole } from '../fixtures/black-hole';
import { BrokerHarness } from '../fixtures/broker-harness';
import { BrokerProcess, sameDeploymentAs } from '../fixtures/broker-process';
import { dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { expectErrorShape } from '../fixtures/error-shape';

/**
 * The production handlers when DynamoDB, Secrets Manager or KMS hang (issue 9 §1): each store sits behind a black
 * hole proxy (a real socket that, once silenced, accepts requests and never answers). The broker must answer by
 * itself, before its Lambda timeout, in the API's error shape (504) or, where it knows enough, with a token;
 * never leave the answer to Lambda's timeout (a bare 502 from API Gateway).
 */

let h: BrokerHarness;
let n = 0;
const fresh = (stem: string) => `${stem}${++n}`;

beforeAll(async () => {
  h = await BrokerHarness.start({ hangableStores: true });
});
afterAll(async () => {
  await h.close();
});
afterEach(() => {
  for (const hole of Object.values(h.holes ?? {})) hole.restore();
});

/** Asserts a 504 in the API's error shape, answered while the Lambda context still had time left. */
function expectAnsweredInTime(res: { status: number; body: unknown }): void {
  expect(res.status).toBe(504);
  expectErrorShape(504, res.body);
  expect(h.lastRemainingMs).toBeGreaterThan(0);
}

describe('DynamoDB hanging', () => {
  it('a warm instance keeps serving the valid token it knows, without asking Entra', async () => {
    // Prepare: the token is fetched and cached while DynamoDB works
    const name = fresh('warm');
    await h.createService(name);
    const first = await h.token('GET', name);
    expect(first.status).toBe(200);
    const before = h.emulator.tokenRequestCount;
    h.holes?.dynamodb.silence();
    // Act
    const res = await h.token('GET', name);
    // Assess
    expect(res.status).toBe(200);
    expect(res.body.access_token).toBe(first.body.access_token);
    expect(h.emulator.tokenRequestCount).toBe(before);
  });

  it('a cold instance that knows nothing answers 504 in the API’s error shape before its timeout', async () => {
    const name = fresh('cold');
    await h.createService(name);
    h.coldStart();
    h.holes?.dynamodb.silence();
    expectAnsweredInTime(await h.token('GET', name));
  });

  it('creating a service answers 504 in the API’s error shape before the function’s timeout', async () => {
    h.holes?.dynamodb.silence();
    expectAnsweredInTime(await h.admin('POST', h.serviceBody(fresh('create'))));
  });

  it('answers within a short remaining Lambda time too, in the API’s error shape', async () => {
    // Prepare: a container with 3 s left; one hanging DynamoDB call alone may take longer than that
    const name = fresh('short');
    await h.createService(name);
    h.coldStart();
    h.holes?.dynamodb.silence();
    const event = apiGatewayEvent({
      method: 'GET',
      resource: '/api/v2/{service}/client_credentials',
      path: `/api/v2/${name}/client_credentials`,
      pathParameters: { service: name },
    });
    // Act
    const res = await h.raw('token', event, { timeoutMs: 3000 });
    // Assess
    expectAnsweredInTime(res);
  });
});

describe('Secrets Manager hanging', () => {
  it('a token request that needs the secret answers 504 in the API’s error shape before its timeout', async () => {
    const name = fresh('secret');
    await h.createService(name);
    h.coldStart();
    h.holes?.secretsManager.silence();
    expectAnsweredInTime(await h.token('GET', name));
  });
});

describe('KMS hanging', () => {
  it('a cold instance still serves a token: straight from Entra, unsealed cache entries skipped', async () => {
    // Prepare: a sealed token is cached; a new container can neither open it nor seal a new one
    const name = fresh('kms');
    await h.createService(name);
    const cached = await h.token('GET', name);
    expect(cached.status).toBe(200);
    h.coldStart();
    h.holes?.kms.silence();
    // Act
    const res = await h.token('GET', name);
    // Assess
    expect(res.status).toBe(200);
    expect(res.body.access_token).toBe(h.emulator.issuedTokens.at(-1));
    expect(h.lastRemainingMs).toBeGreaterThan(0);
  });
});

describe('local mode (npm start) with DynamoDB hanging', () => {
  let hole: BlackHole;
  let broker: BrokerProcess;

  beforeAll(async () => {
    hole = await BlackHole.start(dynamoDbLocalEndpoint());
    broker = await BrokerProcess.start({ env: sameDeploymentAs(h, { AWS_ENDPOINT_URL_DYNAMODB: hole.url }) });
  }, 60_000);
  afterAll(async () => {
    await broker?.stop();
    await hole?.close();
  });

  it('answers a token request with 504 in the API’s error shape, within the token function’s deadline', async () => {
    const name = fresh('local');
    await h.createService(name);
    hole.silence();
    const res = await broker.token('GET', name);
    expect(res.status).toBe(504);
    expectErrorShape(504, res.body);
  });
});
