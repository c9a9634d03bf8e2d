import { BrokerHarness } from '../fixtures/broker-harness';

/**
 * The token routes end to end: production handlers against DynamoDB Local, the embedded Secrets Manager server
 * and the Entra emulator, all over real sockets.
 */
describe('GET|POST|DELETE /api/v2/{service}/client_credentials', () => {
  let h: BrokerHarness;
  let n = 0;
  const fresh = () => `svc${++n}`;

  beforeAll(async () => {
    h = await BrokerHarness.start({ entraTimeoutMs: 500 });
  });
  afterAll(async () => {
    await h.close();
  });
  beforeEach(() => {
    h.emulator.clearFaults();
    h.emulator.setTokenLifetime(3599);
  });

  it('returns a token in the DreamFactory shape with no-store caching headers', async () => {
    const name = fresh();
    await h.createService(name);
    const res = await h.token('GET', name);
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toEqual({
      access_token: h.emulator.issuedTokens.at(-1),
      token_type: 'Bearer',
      expires_in: expect.any(Number),
      expires_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      acquired_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      scope: 'https://graph.microsoft.com/.default',
    });
    expect(res.body.expires_in).toBeGreaterThan(3590);
    expect(res.body.expires_in).toBeLessThanOrEqual(3599);
    expect(Date.parse(res.body.expires_at) - Date.parse(res.body.acquired_at)).toBe(3599_000);
  });

  it('sends the client id, secret (client_secret_post), scope and grant to the tenant token endpoint', async () => {
    const name = fresh();
    await h.createService(name, {}, { scopes: 'https://vault.azure.net/.default' });
    await h.token('GET', name);
    expect(h.emulator.requests.at(-1)).toMatchObject({
      tenant: h.tenantId,
      clientId: h.clientId,
      scope: 'https://vault.azure.net/.default',
      grantType: 'client_credentials',
      credential: 'client_secret_post',
    });
  });

  it('asks Entra once for two GETs: the second is served from the cache', async () => {
    const name = fresh();
    await h.createService(name);
    const before = h.emulator.tokenRequestCount;
    const first = await h.token('GET', name);
    const second = await h.token('GET', name);
    expect(h.emulator.tokenRequestCount - before).toBe(1);
    expect(second.body.access_token).toBe(first.body.access_token);
    expect(second.body.acquired_at).toBe(first.body.acquired_at);
    expect(second.body.expires_in).toBeLessThanOrEqual(first.body.expires_in);
  });

  it('POST always fetches a new token and replaces the cached one', async () => {
    const name = fresh();
    await h.createService(name);
    const first = await h.token('GET', name);
    const before = h.emulator.tokenRequestCount;
    const forced = await h.token('POST', name);
    expect(h.emulator.tokenRequestCount - before).toBe(1);
    expect(forced.status).toBe(200);
    expect(forced.body.access_token).not.toBe(first.body.access_token);
    const after = await h.token('GET', name);
    expect(after.body.access_token).toBe(forced.body.access_token);
    expect(h.emulator.tokenRequestCount - before).toBe(1);
  });

  it('DELETE clears the cached token so the next GET asks Entra again', async () => {
    const name = fresh();
    await h.createService(name);
    const first = await h.token('GET', name);
    const cleared = await h.token('DELETE', name);
    expect(cleared.status).toBe(200);
    expect(cleared.body).toEqual({ success: true, message: 'Token cache cleared successfully.' });
    const before = h.emulator.tokenRequestCount;
    const next = await h.token('GET', name);
    expect(h.emulator.tokenRequestCount - before).toBe(1);
    expect(next.body.access_token).not.toBe(first.body.access_token);
  });

  it('never serves a token with 60 s or less left: a 60 s token is fetched anew on every GET', async () => {
    const name = fresh();
    await h.createService(name);
    h.emulator.setTokenLifetime(60);
    const before = h.emulator.tokenRequestCount;
    await h.token('GET', name);
    await h.token('GET', name);
    expect(h.emulator.tokenRequestCount - before).toBe(2);
  });

  it('keeps one cached token per scope and serves ?scope= from the service scopes', async () => {
    const name = fresh();
    await h.createService(
      name,
      {},
      { scopes: 'https://graph.microsoft.com/.default https://vault.azure.net/.default' },
    );
    const graph = await h.token('GET', name);
    const vault = await h.token('GET', name, { scope: 'https://vault.azure.net/.default' });
    expect(graph.body.scope).toBe('https://graph.microsoft.com/.default');
    expect(vault.body.scope).toBe('https://vault.azure.net/.default');
    expect(vault.body.access_token).not.toBe(graph.body.access_token);
    const before = h.emulator.tokenRequestCount;
    await h.token('GET', name, { scope: 'https://vault.azure.net/.default' });
    expect(h.emulator.tokenRequestCount).toBe(before);
  });

  it('refuses a scope the service does not list with 400', async () => {
    const name = fresh();
    await h.createService(name);
    const res = await h.token('GET', name, { scope: 'https://storage.azure.com/.default' });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain('https://storage.azure.com/.default');
  });

  it('serves a cached token without reading the secret (Secrets Manager unreachable, fresh container)', async () => {
    const other = await BrokerHarness.start();
    try {
      await other.createService('cached');
      const first = await other.token('GET', 'cached');
      await other.stopSecretsManager();
      // A new container has no secret cached in process: only the DynamoDB cache can serve it.
      other.coldStart();
      const second = await other.token('GET', 'cached');
      expect(second.status).toBe(200);
      expect(second.body.access_token).toBe(first.body.access_token);
      // The secret really is out of reach: a forced refresh, which needs it, fails.
      const forced = await other.token('POST', 'cached');
      expect(forced.status).toBe(500);
    } finally {
      await other.close();
    }
  });

  it('answers 404 for an unknown service', async () => {
    const res = await h.token('GET', 'nosuchservice');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: { code: 404, message: 'service "nosuchservice" does not exist' } });
  });

  it('answers 404 when clearing the cache of an unknown service', async () => {
    const res = await h.token('DELETE', 'nosuchservice');
    expect(res.status).toBe(404);
  });

  it('answers 403 for an inactive service without asking Entra', async () => {
    const name = fresh();
    await h.createService(name, { is_active: false });
    const before = h.emulator.tokenRequestCount;
    const res = await h.token('GET', name);
    expect(res.status).toBe(403);
    expect(res.body.error.message).toContain('not active');
    expect(h.emulator.tokenRequestCount).toBe(before);
  });

  it('answers 400 when the service does not enable client credentials', async () => {
    const name = fresh();
    await h.createService(name, {}, { grant_type: 'authorization_code', is_client_credentials: false });
    const res = await h.token('GET', name);
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain('does not allow the client credentials grant');
  });

  it('allows client credentials on an authorization_code service whose is_client_credentials is true', async () => {
    const name = fresh();
    await h.createService(name, {}, { grant_type: 'authorization_code', is_client_credentials: true });
    const res = await h.token('GET', name);
    expect(res.status).toBe(200);
  });

  it('answers 400 for a malformed service name in the path', async () => {
    const res = await h.token('GET', 'Bad Name!');
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/^service: /);
  });

  it('answers 400 naming an unknown query parameter', async () => {
    const name = fresh();
    await h.createService(name);
    const res = await h.token('GET', name, { scopes: 'x' });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toBe('unknown query parameter: scopes');
  });

  it('answers 405 with Allow for an unsupported method', async () => {
    const res = await h.token('PUT', 'anything');
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('GET, POST, DELETE');
  });
});

describe('Entra failures on the token routes (after retries within the budget)', () => {
  let h: BrokerHarness;
  let n = 0;
  const fresh = () => `err${++n}`;
  /** Enough faults to outlast every retry the 1.5 s budget allows. */
  const persistent = 50;

  beforeAll(async () => {
    h = await BrokerHarness.start({
      entraTimeoutMs: 400,
      env: { TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS: '1500' },
    });
  });
  afterAll(async () => {
    await h.close();
  });
  beforeEach(() => h.emulator.clearFaults());

  it('maps a wrong client secret to 502 invalid_client with Entra trace context', async () => {
    const name = fresh();
    await h.createService(name, {}, { client_secret: 'not-the-secret' });
    const res = await h.token('GET', name);
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe(502);
    expect(res.body.error.message).toMatch(/^invalid_client: AADSTS7000215: Invalid client secret provided/);
    expect(res.body.error.message).not.toContain('Trace ID');
    expect(res.body.error.context).toEqual({
      upstream_status: 401,
      error: 'invalid_client',
      error_codes: [7000215],
      trace_id: expect.any(String),
      correlation_id: expect.any(String),
    });
  });

  it('maps an application missing from the tenant to 502 unauthorized_client (AADSTS700016)', async () => {
    const name = fresh();
    await h.createService(name, {}, { client_id: '00000000-0000-0000-0000-0000000000aa' });
    const res = await h.token('GET', name);
    expect(res.status).toBe(502);
    expect(res.body.error.message).toMatch(/^unauthorized_client: AADSTS700016: /);
    expect(res.body.error.context.upstream_status).toBe(400);
  });

  it('maps an unknown tenant to 502 invalid_tenant (AADSTS90002)', async () => {
    const name = fresh();
    await h.createService(name, {}, { tenant_id: '11111111-2222-3333-4444-555555555555' });
    const res = await h.token('GET', name);
    expect(res.status).toBe(502);
    expect(res.body.error.message).toMatch(/^invalid_tenant: AADSTS90002: /);
  });

  it('maps an invalid scope to 502 invalid_scope (AADSTS70011)', async () => {
    const name = fresh();
    await h.createService(name, {}, { scopes: 'https://unknown-resource.example.com/.default' });
    const res = await h.token('GET', name);
    expect(res.status).toBe(502);
    expect(res.body.error.message).toMatch(/^invalid_scope: AADSTS70011: /);
  });

  it('maps a 429 to 503 and passes on Retry-After', async () => {
    const name = fresh();
    await h.createService(name);
    h.emulator.failNext({ kind: 'throttle', retryAfterSeconds: 17 });
    const res = await h.token('GET', name);
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('17');
    expect(res.body.error.context).toEqual({ upstream_status: 429 });
  });

  it('maps a 503 temporarily_unavailable to 503 with its Entra error', async () => {
    const name = fresh();
    await h.createService(name);
    h.emulator.failNext({ kind: 'unavailable', retryAfterSeconds: 5 }, persistent);
    const res = await h.token('GET', name);
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.body.error.message).toMatch(/^temporarily_unavailable: AADSTS90033/);
  });

  it('maps a 503 without Retry-After to 503 without the header', async () => {
    const name = fresh();
    await h.createService(name);
    h.emulator.failNext({ kind: 'unavailable' }, persistent);
    const res = await h.token('GET', name);
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBeUndefined();
  });

  it('maps an HTML 500 page to 502 naming the unexpected response', async () => {
    const name = fresh();
    await h.createService(name);
    h.emulator.failNext({ kind: 'html500' }, persistent);
    const res = await h.token('GET', name);
    expect(res.status).toBe(502);
    expect(res.body.error.message).toBe(
      'identity provider returned an invalid token response: unexpected HTTP 500 response (text/html)',
    );
  });

  it('maps a non-JSON 200 body to 502', async () => {
    const name = fresh();
    await h.createService(name);
    h.emulator.failNext({ kind: 'garbage' }, persistent);
    const res = await h.token('GET', name);
    expect(res.status).toBe(502);
    expect(res.body.error.message).toBe(
      'identity provider returned an invalid token response: response body is not valid JSON',
    );
  });

  it('maps a connection reset to 502', async () => {
    const name = fresh();
    await h.createService(name);
    h.emulator.failNext({ kind: 'reset' }, persistent);
    const res = await h.token('GET', name);
    expect(res.status).toBe(502);
    expect(res.body.error.message).toMatch(/^could not complete the request to the identity provider/);
  });

  it('maps a hanging Entra to 504 once the retry budget is spent', async () => {
    const name = fresh();
    await h.createService(name);
    h.emulator.failNext({ kind: 'hang' }, persistent);
    const res = await h.token('GET', name);
    expect(res.status).toBe(504);
    expect(res.body.error.message).toMatch(/^identity provider did not answer within \d+ ms$/);
  });

  it.each([
    [
      'access_token missing',
      { token_type: 'Bearer', expires_in: 3599 },
      'access_token property must be a string',
    ],
    [
      'access_token empty',
      { token_type: 'Bearer', expires_in: 3599, access_token: '' },
      'access_token property must not be empty',
    ],
    ['token_type not Bearer', { token_type: 'pop', expires_in: 3599, access_token: 'x' }, 'token_type'],
    [
      'expires_in missing',
      { token_type: 'Bearer', access_token: 'x' },
      'expires_in must be a positive number',
    ],
    [
      'expires_in zero',
      { token_type: 'Bearer', access_token: 'x', expires_in: 0 },
      'expires_in must be a positive number',
    ],
    ['expires_in not numeric', { token_type: 'Bearer', access_token: 'x', expires_in: 'soon' }, 'expires_in'],
  ])('refuses a 200 response with %s (502) and caches nothing', async (_what, body, message) => {
    const name = fresh();
    await h.createService(name);
    h.emulator.failNext({ kind: 'json', status: 200, body });
    const res = await h.token('GET', name);
    expect(res.status).toBe(502);
    expect(res.body.error.message).toContain(message);
    const before = h.emulator.tokenRequestCount;
    const retry = await h.token('GET', name);
    expect(retry.status).toBe(200);
    expect(h.emulator.tokenRequestCount - before).toBe(1);
  });

  it('accepts expires_in as a numeric string and token_type in any case', async () => {
    const name = fresh();
    await h.createService(name);
    h.emulator.failNext({
      kind: 'json',
      status: 200,
      body: { token_type: 'bearer', expires_in: '3599', access_token: 'eyJ.string-expiry.sig' },
    });
    const res = await h.token('GET', name);
    expect(res.status).toBe(200);
    expect(res.body.token_type).toBe('Bearer');
    expect(res.body.expires_in).toBeGreaterThan(3590);
  });

  it('never writes the client secret or an issued token to the logs', async () => {
    const joined = h.logs.join('');
    expect(joined.length).toBeGreaterThan(0);
    expect(joined).not.toContain(h.clientSecret);
    for (const token of h.emulator.issuedTokens) expect(joined).not.toContain(token);
  });
});
