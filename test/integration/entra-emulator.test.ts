/**
 * The Entra emulator itself, over real sockets: other integration tests trust it to answer like Entra, so
 * its success shape, error shape, credentials, faults and shutdown are pinned here.
 */
import https from 'node:https';
import { type EmulatorApp, EntraEmulator } from '../fixtures/entra-emulator';
import { createTestCertificate } from '../fixtures/tls';

const TENANT = '6f1c2a9e-4b7d-4e21-9c3a-0d5e8f7a1b2c';
const DOMAIN = 'contoso.onmicrosoft.com';
const CLIENT_ID = '0b9d7c4e-3a2f-4c61-8e5d-1f2a3b4c5d6e';
const SECRET = 'emulator-test-secret~value';
const GRAPH = 'https://graph.microsoft.com/.default';

const app: EmulatorApp = {
  tenantId: TENANT,
  tenantDomain: DOMAIN,
  clientId: CLIENT_ID,
  clientSecrets: [SECRET],
};
const disabledApp: EmulatorApp = {
  tenantId: TENANT,
  clientId: 'disabled-app',
  clientSecrets: ['x'],
  disabled: true,
};
const expiredApp: EmulatorApp = {
  tenantId: TENANT,
  clientId: 'expired-app',
  clientSecrets: ['old'],
  secretExpired: true,
};

/** Form fields of a valid client_secret_post request for {@link app}. */
const validForm = {
  grant_type: 'client_credentials',
  client_id: CLIENT_ID,
  client_secret: SECRET,
  scope: GRAPH,
};

let emulator: EntraEmulator;

beforeAll(async () => {
  emulator = await EntraEmulator.start({ apps: [app, disabledApp, expiredApp] });
});

afterAll(() => emulator.stop());

beforeEach(() => {
  emulator.clearFaults();
  emulator.resetStats();
});

interface TokenRequest {
  tenant?: string;
  headers?: Record<string, string>;
  /** Raw body; defaults to the form encoding of `form`. */
  body?: string;
  signal?: AbortSignal;
}

function requestToken(form: Record<string, string>, init: TokenRequest = {}): Promise<Response> {
  return fetch(emulator.tokenEndpoint(init.tenant ?? TENANT), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...init.headers },
    body: init.body ?? new URLSearchParams(form).toString(),
    ...(init.signal ? { signal: init.signal } : {}),
  });
}

/** HTTP Basic credentials as RFC 6749 2.3.1 wants them: id and secret form-encoded, then base64. */
function basicAuthorization(clientId: string, secret: string): string {
  const formEncode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(secret)}`).toString('base64')}`;
}

/** A JSON response body as a record, so its fields can be asserted on. */
async function readJson(response: Response): Promise<Record<string, unknown>> {
  return (await response.json()) as Record<string, unknown>;
}

function decodeClaims(token: string): Record<string, unknown> {
  const [, payload] = token.split('.');
  return JSON.parse(Buffer.from(payload as string, 'base64url').toString('utf8'));
}

/** Waits for a condition the server reaches asynchronously (a request arriving), failing after 5 s. */
async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('Entra emulator token endpoint', () => {
  it('issues a Bearer token in Entra success shape with no-store headers', async () => {
    // Act
    const response = await requestToken(validForm);

    // Assess
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(response.headers.get('cache-control')).toBe('no-store, no-cache');
    expect(response.headers.get('pragma')).toBe('no-cache');
    expect(response.headers.get('x-ms-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const body = await readJson(response);
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'ext_expires_in', 'token_type']);
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599 });
    expect(typeof body.access_token).toBe('string');
  });

  it('issues a different JWT-shaped token each time, with the resource, tenant and app as claims', async () => {
    // Act
    await requestToken(validForm);
    await requestToken({ ...validForm, scope: `api://${CLIENT_ID}/.default` }, { tenant: DOMAIN });

    // Assess
    expect(emulator.issuedTokens).toHaveLength(2);
    expect(new Set(emulator.issuedTokens).size).toBe(2);
    const [graphToken, apiToken] = emulator.issuedTokens as [string, string];
    expect(graphToken.split('.')).toHaveLength(3);
    const claims = decodeClaims(graphToken);
    expect(claims).toMatchObject({
      aud: 'https://graph.microsoft.com',
      iss: `https://sts.windows.net/${TENANT}/`,
      appid: CLIENT_ID,
      tid: TENANT,
      roles: [],
    });
    expect(claims.exp).toBe((claims.iat as number) + 3599);
    // Addressed by domain, the token still names the tenant by its GUID.
    expect(decodeClaims(apiToken)).toMatchObject({ aud: `api://${CLIENT_ID}`, tid: TENANT });
  });

  it('accepts client_secret_basic with a form-encoded id and secret', async () => {
    // Prepare: a secret with characters that form encoding changes.
    const secret = 'a+b/c d=e%';
    emulator.registerApp({ tenantId: TENANT, clientId: 'basic-app', clientSecrets: [secret] });

    // Act
    const response = await requestToken(
      { grant_type: 'client_credentials', scope: GRAPH },
      { headers: { authorization: basicAuthorization('basic-app', secret) } },
    );

    // Assess
    expect(response.status).toBe(200);
    expect(emulator.requests[0]).toMatchObject({ clientId: 'basic-app', credential: 'client_secret_basic' });
  });

  it('rejects a wrong secret with 401 invalid_client AADSTS7000215 in Entra error shape', async () => {
    // Act
    const response = await requestToken({ ...validForm, client_secret: 'not-the-secret' });

    // Assess
    expect(response.status).toBe(401);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const body = await readJson(response);
    expect(body).toEqual({
      error: 'invalid_client',
      error_description: expect.stringMatching(
        /^AADSTS7000215: Invalid client secret provided\. .*\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\nTimestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/s,
      ),
      error_codes: [7000215],
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/),
      trace_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      correlation_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      error_uri: 'https://login.microsoftonline.com/error?code=7000215',
    });
    expect(String(body.error_description)).toContain(`Trace ID: ${body.trace_id}`);
  });

  /** Error cases: `init` changes the request, `form` overrides fields (an empty string removes one). */
  const errorCases: Array<{
    label: string;
    init?: TokenRequest;
    form?: Record<string, string>;
    status: number;
    error: string;
    code: number;
  }> = [
    {
      label: 'a multi-tenant alias as tenant',
      init: { tenant: 'organizations' },
      status: 400,
      error: 'invalid_request',
      code: 50059,
    },
    {
      label: 'an unknown tenant',
      init: { tenant: 'fabrikam.onmicrosoft.com' },
      status: 400,
      error: 'invalid_tenant',
      code: 90002,
    },
    {
      label: 'a JSON body',
      init: { headers: { 'content-type': 'application/json' }, body: JSON.stringify(validForm) },
      status: 400,
      error: 'invalid_request',
      code: 900144,
    },
    { label: 'a missing scope', form: { scope: '' }, status: 400, error: 'invalid_request', code: 900144 },
    {
      label: 'another grant type',
      form: { grant_type: 'password' },
      status: 400,
      error: 'unsupported_grant_type',
      code: 70003,
    },
    {
      label: 'an app unknown in the tenant',
      form: { client_id: 'no-such-app' },
      status: 400,
      error: 'unauthorized_client',
      code: 700016,
    },
    {
      label: 'a disabled app',
      form: { client_id: 'disabled-app', client_secret: 'x' },
      status: 400,
      error: 'unauthorized_client',
      code: 7000112,
    },
    {
      label: 'no credential',
      form: { client_secret: '' },
      status: 401,
      error: 'invalid_client',
      code: 7000216,
    },
    {
      label: 'an expired secret',
      form: { client_id: 'expired-app', client_secret: 'old' },
      status: 401,
      error: 'invalid_client',
      code: 7000222,
    },
    {
      label: 'a scope without /.default',
      form: { scope: 'https://graph.microsoft.com/User.Read' },
      status: 400,
      error: 'invalid_scope',
      code: 1002012,
    },
    {
      label: 'two resources in scope',
      form: { scope: `${GRAPH} https://vault.azure.net/.default` },
      status: 400,
      error: 'invalid_scope',
      code: 70011,
    },
    {
      label: 'an unknown resource',
      form: { scope: 'https://unknown.example/.default' },
      status: 400,
      error: 'invalid_scope',
      code: 70011,
    },
    {
      label: 'both a body secret and HTTP Basic',
      init: { headers: { authorization: basicAuthorization(CLIENT_ID, SECRET) } },
      status: 401,
      error: 'invalid_client',
      code: 90023,
    },
  ];

  it.each(errorCases)(
    'answers $label with $status $error AADSTS$code',
    async ({ init, form, status, error, code }) => {
      // Prepare
      const fields = Object.fromEntries(
        Object.entries({ ...validForm, ...form }).filter(([, value]) => value !== ''),
      );

      // Act
      const response = await requestToken(fields, init);

      // Assess
      expect(response.status).toBe(status);
      const body = await readJson(response);
      expect(body).toMatchObject({ error, error_codes: [code] });
      expect(String(body.error_description)).toMatch(new RegExp(`^AADSTS${code}: `));
    },
  );

  it('accepts only the new secret after a rotation', async () => {
    // Prepare
    emulator.registerApp({ tenantId: TENANT, clientId: 'rotating-app', clientSecrets: ['first'] });
    const form = { ...validForm, client_id: 'rotating-app' };

    // Act
    emulator.setClientSecrets('rotating-app', ['second']);
    const withOld = await requestToken({ ...form, client_secret: 'first' });
    const withNew = await requestToken({ ...form, client_secret: 'second' });

    // Assess
    expect(withOld.status).toBe(401);
    expect(withNew.status).toBe(200);
  });

  it('records each request without its secret', async () => {
    // Act
    await requestToken({ ...validForm, 'x-client-SKU': 'ignored-extra-field' });

    // Assess
    expect(emulator.requests).toEqual([
      {
        tenant: TENANT,
        clientId: CLIENT_ID,
        scope: GRAPH,
        grantType: 'client_credentials',
        credential: 'client_secret_post',
        contentType: 'application/x-www-form-urlencoded',
        at: expect.any(Number),
      },
    ]);
    expect(JSON.stringify(emulator.requests)).not.toContain(SECRET);
  });

  it('publishes OpenID configuration naming the tenant token endpoint', async () => {
    // Act
    const known = await fetch(emulator.openIdConfigurationUrl(DOMAIN));
    const unknown = await fetch(emulator.openIdConfigurationUrl('fabrikam.onmicrosoft.com'));

    // Assess
    expect(known.status).toBe(200);
    expect(await known.json()).toMatchObject({ token_endpoint: emulator.tokenEndpoint(TENANT) });
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({ error: 'invalid_tenant', error_codes: [90002] });
  });
});

describe('Entra emulator faults', () => {
  it('throttles with a plain-text 429 and Retry-After, then answers normally', async () => {
    // Prepare
    emulator.failNext({ kind: 'throttle', retryAfterSeconds: 7 });

    // Act
    const throttled = await requestToken(validForm);
    const next = await requestToken(validForm);

    // Assess
    expect(throttled.status).toBe(429);
    expect(throttled.headers.get('retry-after')).toBe('7');
    expect(throttled.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await throttled.text()).toBe('Too Many Requests');
    expect(next.status).toBe(200);
    expect(emulator.tokenRequestCount).toBe(2);
    expect(emulator.issuedTokens).toHaveLength(1);
  });

  it('resets the connection without answering', async () => {
    // Prepare
    emulator.failNext({ kind: 'reset' });

    // Act / Assess
    await expect(requestToken(validForm)).rejects.toThrow('fetch failed');
    expect(emulator.tokenRequestCount).toBe(1);
  });

  it('hangs until the client gives up with AbortSignal.timeout', async () => {
    // Prepare
    emulator.failNext({ kind: 'hang' });

    // Act / Assess
    await expect(requestToken(validForm, { signal: AbortSignal.timeout(200) })).rejects.toMatchObject({
      name: 'TimeoutError',
    });
    expect((await requestToken(validForm)).status).toBe(200);
  });

  it('takes faults and reports stats over the control endpoints', async () => {
    // Prepare
    const control = await fetch(`${emulator.url}/_emulator/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ fault: { kind: 'unavailable', retryAfterSeconds: 2 }, count: 2 }),
    });
    expect(control.status).toBe(204);

    // Act
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await requestToken(validForm)).status);
    const stats = await fetch(`${emulator.url}/_emulator/stats`);

    // Assess
    expect(statuses).toEqual([503, 503, 200]);
    expect(await stats.json()).toEqual({ tokenRequestCount: 3, issued: 1 });
  });
});

describe('Entra emulator lifecycle', () => {
  it('stop() ends a hanging request instead of waiting for it', async () => {
    // Prepare
    const own = await EntraEmulator.start({ apps: [app] });
    own.failNext({ kind: 'hang' });
    const pending = fetch(own.tokenEndpoint(TENANT), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(validForm).toString(),
    });
    const settled = pending.then(
      () => 'answered',
      () => 'failed',
    );
    await until(() => own.tokenRequestCount === 1);

    // Act
    const started = Date.now();
    await own.stop();

    // Assess
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await settled).toBe('failed');
  });

  it('serves HTTPS with a certificate that a client trusting the private CA accepts', async () => {
    // Prepare
    const tls = await createTestCertificate();
    const secure = await EntraEmulator.start({ https: { key: tls.keyPem, cert: tls.certPem }, apps: [app] });

    try {
      // Act
      const { status, body } = await postForm(secure.tokenEndpoint(TENANT), validForm, tls.caPem);

      // Assess
      expect(secure.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(status).toBe(200);
      expect(JSON.parse(body)).toMatchObject({ token_type: 'Bearer' });
    } finally {
      await secure.stop();
    }
  });
});

/** POSTs a form with node:https, trusting only `ca`. */
function postForm(
  url: string,
  form: Record<string, string>,
  ca: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      url,
      { method: 'POST', ca, agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(new URLSearchParams(form).toString());
  });
}
