/**
 * The Entra emulator's client assertions, over real sockets: certificate assertions (private_key_jwt) checked
 * against the app's registered certificates, and federated assertions from the local STS (an OIDC issuer whose
 * keys the emulator finds through discovery). Each of Entra's refusals the broker maps is pinned here.
 */
import { randomUUID } from 'node:crypto';
import { GetWebIdentityTokenCommand, STSClient } from '@aws-sdk/client-sts';
import { importPKCS8, type JWTPayload, SignJWT } from 'jose';
import { type RunningStsServer, startStsServer } from '../../local/sts-server';
import { type ClientCertificate, createClientCertificate } from '../fixtures/client-certificates';
import { EntraEmulator } from '../fixtures/entra-emulator';

const TENANT = '7a1c2a9e-4b7d-4e21-9c3a-0d5e8f7a1b2c';
const DOMAIN = 'fabrikam.onmicrosoft.com';
const CLIENT_ID = '1b9d7c4e-3a2f-4c61-8e5d-1f2a3b4c5d6e';
const FEDERATED_CLIENT_ID = '2c9d7c4e-3a2f-4c61-8e5d-1f2a3b4c5d6e';
const GRAPH = 'https://graph.microsoft.com/.default';
const ROLE_ARN = 'arn:aws:iam::123456789012:role/token-broker-token';
const EXCHANGE = 'api://AzureADTokenExchange';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

let emulator: EntraEmulator;
let sts: RunningStsServer;
let stsClient: STSClient;
let registered: ClientCertificate;
let unregistered: ClientCertificate;
let revoked: ClientCertificate;
let expired: ClientCertificate;

beforeAll(async () => {
  [registered, unregistered, revoked, expired] = await Promise.all([
    createClientCertificate(),
    createClientCertificate(),
    createClientCertificate(),
    createClientCertificate({
      notBefore: new Date(Date.now() - 40 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    }),
  ]);
  sts = await startStsServer({ roleArn: ROLE_ARN });
  stsClient = new STSClient({
    endpoint: sts.url,
    region: 'eu-west-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  emulator = await EntraEmulator.start({
    apps: [
      {
        tenantId: TENANT,
        tenantDomain: DOMAIN,
        clientId: CLIENT_ID,
        clientSecrets: [],
        certificates: [
          { pem: registered.certificatePem },
          { pem: revoked.certificatePem, revoked: true },
          { pem: expired.certificatePem },
        ],
      },
      {
        tenantId: TENANT,
        clientId: FEDERATED_CLIENT_ID,
        clientSecrets: [],
        federatedCredentials: [{ issuer: sts.issuer, subject: ROLE_ARN, audience: EXCHANGE }],
      },
    ],
  });
});

afterAll(async () => {
  stsClient.destroy();
  await Promise.all([emulator.stop(), sts.close()]);
});

interface AssertionOptions {
  certificate?: ClientCertificate;
  /** Key that signs; the certificate's own by default. */
  signingKeyOf?: ClientCertificate;
  alg?: 'PS256' | 'RS256';
  header?: Record<string, unknown>;
  claims?: JWTPayload;
  /** Claims to leave out of the defaults. */
  omit?: string[];
}

/** A client assertion as the broker builds it (PS256, x5t#S256, 10 minutes), with overrides. */
async function certificateAssertion(options: AssertionOptions = {}): Promise<string> {
  const certificate = options.certificate ?? registered;
  const alg = options.alg ?? 'PS256';
  const key = await importPKCS8((options.signingKeyOf ?? certificate).privateKeyPem, alg);
  const now = Math.floor(Date.now() / 1000);
  const claims: JWTPayload = {
    aud: emulator.tokenEndpoint(TENANT),
    iss: CLIENT_ID,
    sub: CLIENT_ID,
    jti: randomUUID(),
    nbf: now,
    iat: now,
    exp: now + 600,
    ...options.claims,
  };
  for (const name of options.omit ?? []) delete claims[name];
  const thumbprint =
    alg === 'PS256' ? { 'x5t#S256': certificate.thumbprintSha256 } : { x5t: certificate.thumbprintSha1 };
  return new SignJWT(claims)
    .setProtectedHeader({ alg, typ: 'JWT', ...thumbprint, ...options.header })
    .sign(key);
}

async function federatedAssertion(audience = EXCHANGE): Promise<string> {
  const { WebIdentityToken } = await stsClient.send(
    new GetWebIdentityTokenCommand({ Audience: [audience], SigningAlgorithm: 'RS256', DurationSeconds: 300 }),
  );
  return WebIdentityToken as string;
}

async function requestWithAssertion(
  assertion: string,
  clientId = CLIENT_ID,
  tenant = TENANT,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(emulator.tokenEndpoint(tenant), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: clientId,
      scope: GRAPH,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: assertion,
    }).toString(),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function expectRefusal(result: { status: number; body: Record<string, unknown> }, code: number): void {
  expect(result.body.error_codes).toEqual([code]);
  expect(String(result.body.error_description)).toMatch(new RegExp(`^AADSTS${code}: `));
  expect(result.status).toBeGreaterThanOrEqual(400);
}

describe('certificate assertions', () => {
  it('issues a token for a PS256 assertion naming a registered certificate by x5t#S256', async () => {
    const result = await requestWithAssertion(await certificateAssertion());
    expect(result.status).toBe(200);
    expect(result.body.token_type).toBe('Bearer');
  });

  it('issues a token for an RS256 assertion naming the certificate by its SHA-1 x5t', async () => {
    const result = await requestWithAssertion(await certificateAssertion({ alg: 'RS256' }));
    expect(result.status).toBe(200);
  });

  it('accepts the token endpoint addressed by the tenant domain as the audience', async () => {
    const assertion = await certificateAssertion({ claims: { aud: emulator.tokenEndpoint(DOMAIN) } });
    expect((await requestWithAssertion(assertion, CLIENT_ID, DOMAIN)).status).toBe(200);
  });

  it('refuses a certificate that is not registered on the app with AADSTS700027', async () => {
    expectRefusal(
      await requestWithAssertion(await certificateAssertion({ certificate: unregistered })),
      700027,
    );
  });

  it('refuses a SHA-256 thumbprint sent as x5t with AADSTS700027', async () => {
    const assertion = await certificateAssertion({
      alg: 'RS256',
      header: { x5t: registered.thumbprintSha256 },
    });
    expectRefusal(await requestWithAssertion(assertion), 700027);
  });

  it('refuses an assertion signed by another key than the named certificate with AADSTS700027', async () => {
    const assertion = await certificateAssertion({ signingKeyOf: unregistered });
    const result = await requestWithAssertion(assertion);
    expectRefusal(result, 700027);
    expect(String(result.body.error_description)).toContain('signature');
  });

  it('refuses an assertion whose issuer is another client with AADSTS700021', async () => {
    const other = randomUUID();
    expectRefusal(
      await requestWithAssertion(await certificateAssertion({ claims: { iss: other, sub: other } })),
      700021,
    );
  });

  it('refuses an assertion whose subject differs from its issuer with AADSTS50048', async () => {
    expectRefusal(
      await requestWithAssertion(await certificateAssertion({ claims: { sub: 'someone' } })),
      50048,
    );
  });

  it('refuses an audience other than the token endpoint with AADSTS700023', async () => {
    const assertion = await certificateAssertion({ claims: { aud: `${emulator.url}/${TENANT}` } });
    expectRefusal(await requestWithAssertion(assertion), 700023);
  });

  it('refuses an assertion that expired more than 5 minutes ago with AADSTS700024', async () => {
    const now = Math.floor(Date.now() / 1000);
    const assertion = await certificateAssertion({
      claims: { nbf: now - 900, iat: now - 900, exp: now - 301 },
    });
    expectRefusal(await requestWithAssertion(assertion), 700024);
  });

  it('accepts an assertion that expired less than 5 minutes ago (clock skew)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const assertion = await certificateAssertion({
      claims: { nbf: now - 600, iat: now - 600, exp: now - 240 },
    });
    expect((await requestWithAssertion(assertion)).status).toBe(200);
  });

  it('refuses an assertion valid only from more than 5 minutes ahead with AADSTS700024', async () => {
    const now = Math.floor(Date.now() / 1000);
    const assertion = await certificateAssertion({ claims: { nbf: now + 400, exp: now + 900 } });
    expectRefusal(await requestWithAssertion(assertion), 700024);
  });

  it('refuses an assertion without exp with AADSTS700024', async () => {
    expectRefusal(await requestWithAssertion(await certificateAssertion({ omit: ['exp'] })), 700024);
  });

  it('refuses an assertion without jti', async () => {
    const result = await requestWithAssertion(await certificateAssertion({ omit: ['jti'] }));
    expectRefusal(result, 50027);
    expect(String(result.body.error_description)).toContain('jti');
  });

  it('refuses a revoked certificate with AADSTS7000214', async () => {
    expectRefusal(await requestWithAssertion(await certificateAssertion({ certificate: revoked })), 7000214);
  });

  it('refuses a certificate outside its validity period with AADSTS1000502', async () => {
    expectRefusal(await requestWithAssertion(await certificateAssertion({ certificate: expired })), 1000502);
  });

  it('refuses an assertion that is not a JWT', async () => {
    expectRefusal(await requestWithAssertion('not-a-jwt'), 50027);
  });

  it('accepts a certificate registered at run time through the control endpoint', async () => {
    const late = await createClientCertificate();
    const assertion = await certificateAssertion({ certificate: late });
    expectRefusal(await requestWithAssertion(assertion), 700027);

    const registration = await fetch(`${emulator.url}/_emulator/apps/${CLIENT_ID}/certificates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pem: late.certificatePem }),
    });
    expect(registration.status).toBe(204);
    expect((await requestWithAssertion(assertion)).status).toBe(200);
  });

  it('answers 404 when registering a certificate for an unknown app', async () => {
    const registration = await fetch(`${emulator.url}/_emulator/apps/${randomUUID()}/certificates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pem: registered.certificatePem }),
    });
    expect(registration.status).toBe(404);
  });
});

describe('federated assertions', () => {
  it('issues a token for an STS token whose issuer, subject and audience are registered', async () => {
    const result = await requestWithAssertion(await federatedAssertion(), FEDERATED_CLIENT_ID);
    expect(result.status).toBe(200);
    expect(result.body.token_type).toBe('Bearer');
  });

  it('refuses a token of an issuer the app does not trust with AADSTS700211', async () => {
    expectRefusal(await requestWithAssertion(await federatedAssertion(), CLIENT_ID), 700211);
  });

  it('refuses an audience that matches no federated credential with AADSTS70021', async () => {
    const result = await requestWithAssertion(await federatedAssertion('api://Other'), FEDERATED_CLIENT_ID);
    expectRefusal(result, 70021);
    expect(String(result.body.error_description)).toContain(`Assertion Subject: '${ROLE_ARN}'`);
  });

  it('matches the subject case-sensitively (AADSTS70021)', async () => {
    const clientId = randomUUID();
    emulator.registerApp({
      tenantId: TENANT,
      clientId,
      clientSecrets: [],
      federatedCredentials: [{ issuer: sts.issuer, subject: ROLE_ARN.toUpperCase(), audience: EXCHANGE }],
    });
    expectRefusal(await requestWithAssertion(await federatedAssertion(), clientId), 70021);
  });

  it('answers AADSTS70021 while a new credential propagates, then issues', async () => {
    const clientId = randomUUID();
    emulator.registerApp({
      tenantId: TENANT,
      clientId,
      clientSecrets: [],
      federatedCredentials: [
        { issuer: sts.issuer, subject: ROLE_ARN, audience: EXCHANGE, pendingRequests: 1 },
      ],
    });
    expectRefusal(await requestWithAssertion(await federatedAssertion(), clientId), 70021);
    expect((await requestWithAssertion(await federatedAssertion(), clientId)).status).toBe(200);
  });

  it('refuses an expired token with AADSTS700024', async () => {
    const past = await startStsServer({ roleArn: ROLE_ARN, now: () => Date.now() - 3_600_000 });
    const clientId = randomUUID();
    emulator.registerApp({
      tenantId: TENANT,
      clientId,
      clientSecrets: [],
      federatedCredentials: [{ issuer: past.issuer, subject: ROLE_ARN, audience: EXCHANGE }],
    });
    const client = new STSClient({
      endpoint: past.url,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    try {
      const { WebIdentityToken } = await client.send(
        new GetWebIdentityTokenCommand({
          Audience: [EXCHANGE],
          SigningAlgorithm: 'RS256',
          DurationSeconds: 60,
        }),
      );
      expectRefusal(await requestWithAssertion(WebIdentityToken as string, clientId), 700024);
    } finally {
      client.destroy();
      await past.close();
    }
  });

  it('refuses a token whose signature does not verify against the issuer keys with AADSTS700027', async () => {
    const token = await federatedAssertion();
    const [header, payload] = token.split('.');
    const forged = `${header}.${payload}.${Buffer.alloc(256, 7).toString('base64url')}`;
    expectRefusal(await requestWithAssertion(forged, FEDERATED_CLIENT_ID), 700027);
  });

  it('accepts a federated credential registered at run time through the control endpoint', async () => {
    const clientId = randomUUID();
    emulator.registerApp({ tenantId: TENANT, clientId, clientSecrets: [] });
    const assertion = await federatedAssertion();
    expectRefusal(await requestWithAssertion(assertion, clientId), 700211);

    const registration = await fetch(`${emulator.url}/_emulator/apps/${clientId}/federated-credentials`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ issuer: sts.issuer, subject: ROLE_ARN, audience: EXCHANGE }),
    });
    expect(registration.status).toBe(204);
    expect((await requestWithAssertion(assertion, clientId)).status).toBe(200);
  });
});
