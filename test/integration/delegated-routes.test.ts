/**
 * The authorization code flow's HTTP layer (functions/delegated.ts) through the production handler, with its
 * environment pointed at DynamoDB Local, the local KMS and Secrets Manager servers and the Entra emulator: query
 * validation, the callback's HTML pages and headers, the 401 shape, return_to, and what reaches the logs.
 */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { apiGatewayEvent } from '../fixtures/apigw-event';
import { BrokerHarness } from '../fixtures/broker-harness';
import { consentWithoutBrowser } from '../fixtures/entra-emulator-delegated';

const BASE = 'http://127.0.0.1:9';
const USER = {
  tenantId: '',
  oid: '5b0c1f2e-3d4a-4b5c-8d6e-7f8091a2b3c4',
  preferredUsername: 'megan@contoso.onmicrosoft.com',
  name: 'Megan Bowen',
};
let h: BrokerHarness;

beforeAll(async () => {
  h = await BrokerHarness.start({ env: { TOKEN_BROKER_PUBLIC_BASE_URL: BASE } });
  h.emulator.registerApp({
    tenantId: h.tenantId,
    clientId: h.clientId,
    clientSecrets: [h.clientSecret],
    redirectUris: [`${BASE}/api/v2/mail/sso`],
  });
  h.emulator.delegated.addUser({ ...USER, tenantId: h.tenantId });
  await h.createService(
    'mail',
    {},
    { grant_type: 'authorization_code', return_to_hosts: ['app.example.com'] },
  );
  await h.createService('apponly');
});

afterAll(() => h.close());

function event(
  resource: string,
  service: string,
  query: Record<string, string>,
  method = 'GET',
): APIGatewayProxyEvent {
  return apiGatewayEvent({
    method,
    resource,
    path: resource.replace('{service}', service).replace('{name}', service),
    pathParameters: resource.includes('{name}') ? { name: service } : { service },
    query,
    identity: { userArn: 'arn:aws:iam::111122223333:role/workload', caller: 'AROAEXAMPLE:job' },
  });
}

const authorize = (query: Record<string, string>, service = 'mail') =>
  h.raw('delegated', event('/api/v2/{service}/authorize', service, query));
const sso = (query: Record<string, string>, service = 'mail') =>
  h.raw('delegated', event('/api/v2/{service}/sso', service, query));
const userToken = (query: Record<string, string>, method = 'GET') =>
  h.raw('delegated', event('/api/v2/{service}/user_token', 'mail', query, method));

/** The callback parameters after the emulator's consent for a fresh authorize call. */
async function callbackFor(query: Record<string, string>, accept = true): Promise<Record<string, string>> {
  const started = await authorize(query);
  const landing = await consentWithoutBrowser(
    (started.body as { authorization_url: string }).authorization_url,
    {
      userOid: USER.oid,
      accept,
    },
  );
  return Object.fromEntries(landing.searchParams);
}

describe('GET /api/v2/{service}/authorize', () => {
  it('answers the authorization URL with the broker callback as redirect URI, and when the state expires', async () => {
    const res = await authorize({ user: 'megan' });
    const body = res.body as { authorization_url: string; state_expires_at: string };

    expect(res.status).toBe(200);
    expect(new URL(body.authorization_url).searchParams.get('redirect_uri')).toBe(`${BASE}/api/v2/mail/sso`);
    expect(body.state_expires_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it.each([
    [{}, 'user'],
    [{ user: 'has space' }, 'user'],
    [{ user: 'x'.repeat(129) }, 'user'],
    [{ user: 'megan', extra: '1' }, 'extra'],
    [{ user: 'megan', return_to: 'https://evil.example/' }, 'return_to'],
  ])('refuses %j with a 400 naming %s', async (query, named) => {
    const res = await authorize(query as Record<string, string>);

    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain(named);
  });

  it('refuses a service without the authorization code flow (400)', async () => {
    const res = await authorize({ user: 'megan' }, 'apponly');

    expect(res.status).toBe(400);
  });
});

describe('GET /api/v2/{service}/sso', () => {
  it('answers a Connected page with CSP, no-referrer and no-store', async () => {
    const res = await sso(await callbackFor({ user: 'megan' }));

    expect(res.status).toBe(200);
    expect(res.raw).toContain(`Connected as ${USER.preferredUsername} to mail; you can close this window.`);
    expect(res.headers).toMatchObject({
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store',
    });
  });

  it('sends the browser to an allowed return_to with 303', async () => {
    const res = await sso(
      await callbackFor({ user: 'megan-rt', return_to: 'https://app.example.com/done?x=1' }),
    );

    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('https://app.example.com/done?x=1');
  });

  it.each([
    ['no state', {}, 'without a sign-in response'],
    ['an unknown state', { state: 'forged-state', code: 'forged-code' }, 'already used, or is not known'],
    ['an invalid service name', { state: 'x' }, 'already used, or is not known'],
  ])('answers a 400 page for %s, echoing nothing it was sent', async (_what, query, text) => {
    const res = await sso(query, _what === 'an invalid service name' ? 'NOT A NAME' : 'mail');

    expect(res.status).toBe(400);
    expect(res.raw).toContain(text);
    expect(res.raw).not.toContain('forged');
    expect(res.headers['content-security-policy']).toBe("default-src 'none'; frame-ancestors 'none'");
  });

  it('answers a 400 page naming the refusal for error=access_denied', async () => {
    const res = await sso(await callbackFor({ user: 'megan-no' }, false));

    expect(res.status).toBe(400);
    expect(res.raw).toContain('You declined the consent');
  });
});

describe('/api/v2/{service}/user_token', () => {
  it('answers 401 in the error shape with reason and a fresh authorization_url for an unknown user', async () => {
    const res = await userToken({ user: 'stranger' });
    const error = (res.body as { error: { code: number; context: Record<string, string> } }).error;

    expect(res.status).toBe(401);
    expect(error.code).toBe(401);
    expect(error.context.reason).toBe('not_connected');
    expect(new URL(error.context.authorization_url as string).searchParams.get('response_type')).toBe('code');
  });

  it('serves a connected user a delegated token with the user, then forgets the user on DELETE', async () => {
    await sso(await callbackFor({ user: 'megan-token' }));

    const got = await userToken({ user: 'megan-token', min_ttl: '60' });
    const removed = await userToken({ user: 'megan-token' }, 'DELETE');
    const after = await userToken({ user: 'megan-token' });

    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({
      token_type: 'Bearer',
      user: {
        key: 'megan-token',
        oid: USER.oid,
        tid: h.tenantId,
        preferred_username: USER.preferredUsername,
      },
    });
    expect(removed.body).toEqual({ success: true, message: 'User authorization removed.' });
    expect(after.status).toBe(401);
  });

  it('refuses a min_ttl out of range and an unknown query parameter with 400', async () => {
    expect((await userToken({ user: 'megan', min_ttl: '99999' })).status).toBe(400);
    expect((await userToken({ user: 'megan', force: '1' })).status).toBe(400);
  });

  it('logs no code, refresh token or access token (the redaction check of this file also covers every line)', async () => {
    await sso(await callbackFor({ user: 'megan-logs' }));
    const got = await userToken({ user: 'megan-logs' });

    const logs = h.logs.join('\n');
    expect(logs).toContain('audit: user token served');
    expect(logs).not.toContain((got.body as { access_token: string }).access_token);
  });
});
