import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import {
  type Clock,
  TokenBrokerClient,
  TokenBrokerCredentialsError,
  TokenBrokerNetworkError,
  TokenBrokerNotFoundError,
  TokenBrokerResponseError,
  TokenBrokerUnavailableError,
} from '../../client';
import { executeApiTail, tokenRoutes } from '../../lib/execute-api-grants';
import { freePort } from '../fixtures/dynamodb-local';
import { IamBroker, REGION, SERVICE, type TestPrincipal, testPrincipal } from '../fixtures/iam-broker';

/**
 * The client library against `npm start` with local IAM checks: cache, single flight, forced refresh, clearing,
 * retries and typed errors. The client's clock is a fake one (cache expiry and retry waits advance it, nothing
 * sleeps); its fetch is the real one, counted.
 */

class FakeClock implements Clock {
  t = Date.parse('2026-11-27T12:00:00Z');
  readonly sleeps: number[] = [];
  now = () => this.t;
  sleep = async (ms: number) => {
    this.sleeps.push(ms);
    this.t += ms;
  };
}

/** The real fetch, recording `METHOD path?query` of each request. */
function countingFetch(calls: string[]): typeof fetch {
  return (input, init) => {
    const url = new URL(String(input));
    calls.push(`${init?.method ?? 'GET'} ${url.pathname}${url.search}`);
    return fetch(input, init);
  };
}

const fingerprint = (token: string) => createHash('sha256').update(token).digest('hex').slice(0, 16);

async function rejection(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => {
      throw new Error('the call was expected to fail');
    },
    (error: unknown) => error,
  );
}

describe('TokenBrokerClient against npm start with TOKEN_BROKER_LOCAL_IAM', () => {
  let iam: IamBroker;
  let workload: TestPrincipal;

  beforeAll(async () => {
    workload = testPrincipal('client-app', tokenRoutes(SERVICE).map(executeApiTail));
    // The broker gives up on a throttling Entra at once and passes Retry-After on: the client's retries are tested.
    iam = await IamBroker.start([workload], { TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS: '1000' });
    // Warm: the first token of a fresh broker process (cold caches, Entra's first answer) may be slow.
    await iam.client(workload, { retry: { maxAttempts: 4 } }).getToken(SERVICE);
  });

  afterAll(async () => {
    await iam?.close();
  });

  function setup(options: { retry?: { maxAttempts?: number; budgetMs?: number } } = {}) {
    const clock = new FakeClock();
    const calls: string[] = [];
    const client = iam.client(workload, {
      clock,
      fetch: countingFetch(calls),
      random: () => 0.5,
      retry: { maxAttempts: 4, ...options.retry },
    });
    return { clock, calls, client };
  }

  it('keeps a token in memory until expires_in minus the 60 s margin, then asks the broker again', async () => {
    const { clock, calls, client } = setup();
    const first = await client.getToken(SERVICE);
    const lifetimeMs = first.expiresIn * 1000;

    clock.t += lifetimeMs - 61_000;
    const cached = await client.getToken(SERVICE);
    expect(calls).toHaveLength(1);
    expect(cached.accessToken === first.accessToken).toBe(true);
    expect(cached.expiresIn).toBe(61);

    clock.t += 2_000;
    await client.getToken(SERVICE);
    expect(calls).toEqual([
      `GET /api/v2/${SERVICE}/client_credentials`,
      `GET /api/v2/${SERVICE}/client_credentials`,
    ]);
  });

  it('asks the broker, passing min_ttl, when the cached token has less than minTtl left', async () => {
    const { clock, calls, client } = setup();
    const first = await client.getToken(SERVICE);
    clock.t += (first.expiresIn - 1000) * 1000;

    await client.getToken(SERVICE, { minTtl: 900 });
    expect(calls).toHaveLength(1);
    await client.getToken(SERVICE, { minTtl: 1800 });
    expect(calls[1]).toBe(`GET /api/v2/${SERVICE}/client_credentials?min_ttl=1800`);
  });

  it('lets one request fly for concurrent callers of the same token', async () => {
    const { calls, client } = setup();
    const tokens = await Promise.all(Array.from({ length: 8 }, () => client.getToken(SERVICE)));
    expect(calls).toHaveLength(1);
    expect(new Set(tokens.map((t) => fingerprint(t.accessToken))).size).toBe(1);
  });

  it('forces one new token from Entra for concurrent forceRefresh callers and then serves it from memory', async () => {
    const { calls, client } = setup();
    const before = await client.getToken(SERVICE);
    const entraRequests = iam.emulator.tokenRequestCount;

    const [a, b] = await Promise.all([client.forceRefresh(SERVICE), client.forceRefresh(SERVICE)]);
    const after = await client.getToken(SERVICE);

    expect(iam.emulator.tokenRequestCount).toBe(entraRequests + 1);
    expect(calls.filter((c) => c.startsWith('POST'))).toHaveLength(1);
    expect(fingerprint(a.accessToken)).toBe(fingerprint(b.accessToken));
    expect(fingerprint(after.accessToken)).toBe(fingerprint(a.accessToken));
    expect(fingerprint(after.accessToken)).not.toBe(fingerprint(before.accessToken));
  });

  it('clears the tokens in the broker and in memory', async () => {
    const { calls, client } = setup();
    await client.getToken(SERVICE);
    const entraRequests = iam.emulator.tokenRequestCount;

    await client.clear(SERVICE);
    await client.getToken(SERVICE);

    expect(calls.slice(1)).toEqual([
      `DELETE /api/v2/${SERVICE}/client_credentials`,
      `GET /api/v2/${SERVICE}/client_credentials`,
    ]);
    expect(iam.emulator.tokenRequestCount).toBe(entraRequests + 1);
  });

  it('waits for Retry-After plus jitter after a 503 and then gets the token', async () => {
    const { clock, calls, client } = setup();
    // The broker keeps Entra's pause for every instance until it ends: this wait must pass in real time too.
    const recordSleep = clock.sleep;
    clock.sleep = async (ms: number) => {
      await recordSleep(ms);
      await delay(ms);
    };
    iam.emulator.failNext({ kind: 'throttle', retryAfterSeconds: 2 });

    const token = await client.forceRefresh(SERVICE);

    expect(token.tokenType).toBe('Bearer');
    expect(calls).toEqual([
      `POST /api/v2/${SERVICE}/client_credentials`,
      `POST /api/v2/${SERVICE}/client_credentials`,
    ]);
    // Retry-After 2 s, plus random() 0.5 × the 200 ms base delay.
    expect(clock.sleeps).toEqual([2100]);
  });

  it('gives up at once with TokenBrokerUnavailableError when Retry-After does not fit the budget', async () => {
    const { clock, calls, client } = setup({ retry: { budgetMs: 10_000 } });
    iam.emulator.failNext({ kind: 'throttle', retryAfterSeconds: 30 });

    const error = await rejection(client.forceRefresh(SERVICE));

    expect(error).toBeInstanceOf(TokenBrokerUnavailableError);
    expect(error).toMatchObject({ status: 503, retryAfterSeconds: 30, error: { code: 503 } });
    expect(calls).toHaveLength(1);
    expect(clock.sleeps).toEqual([]);
  });

  it("throws TokenBrokerNotFoundError carrying the API's error shape for an unknown service", async () => {
    const error = await rejection(iam.client(iam.admin).getService('no_such_service'));
    expect(error).toBeInstanceOf(TokenBrokerNotFoundError);
    expect(error).toMatchObject({
      name: 'TokenBrokerNotFoundError',
      status: 404,
      error: { code: 404, message: expect.stringContaining('no_such_service') },
    });
  });

  it('retries a broker that does not answer for idempotent calls, then throws TokenBrokerNetworkError', async () => {
    const clock = new FakeClock();
    const calls: string[] = [];
    const client = new TokenBrokerClient({
      endpoint: `http://127.0.0.1:${await freePort()}`,
      region: REGION,
      credentials: { accessKeyId: 'AKIDX', secretAccessKey: 'x' },
      clock,
      random: () => 1,
      fetch: countingFetch(calls),
      retry: { maxAttempts: 3 },
    });
    const error = await rejection(client.getToken(SERVICE));
    expect(error).toBeInstanceOf(TokenBrokerNetworkError);
    expect((error as Error).message).toMatch(
      /^cannot reach the broker at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED$/,
    );
    expect(calls).toHaveLength(3);
    expect(clock.sleeps).toEqual([200, 400]);

    calls.length = 0;
    await expect(client.createService({ name: 'x' })).rejects.toBeInstanceOf(TokenBrokerNetworkError);
    expect(calls).toHaveLength(1);
  });

  it('refuses a 2xx answer that is not a token response', async () => {
    // A fault the broker cannot produce: an HTML page with status 200 (a misconfigured proxy in front of it).
    const client = iam.client(workload, {
      fetch: async () => new Response('<html>hello</html>', { status: 200 }),
    });
    const error = await rejection(client.getToken(SERVICE));
    expect(error).toBeInstanceOf(TokenBrokerResponseError);
    expect((error as Error).message).toBe("the broker's token response is not valid (not a JSON object)");
  });

  it('reports credentials that cannot be loaded as TokenBrokerCredentialsError', async () => {
    const client = new TokenBrokerClient({
      endpoint: iam.url,
      region: REGION,
      credentials: async () => {
        throw new Error('Could not load credentials from any providers');
      },
    });
    const error = await rejection(client.getToken(SERVICE));
    expect(error).toBeInstanceOf(TokenBrokerCredentialsError);
    expect((error as Error).message).toBe(
      'no AWS credentials to sign with: Could not load credentials from any providers',
    );
  });
});
