/**
 * `config.credential_type` through the production handlers: certificate services (an imported certificate and
 * key) and federated services (an STS web identity token, no secret anywhere), against the Entra emulator, the
 * local Secrets Manager and the local STS over real sockets. No response ever carries a private key.
 */
import { randomUUID } from 'node:crypto';
import { type RunningStsServer, startStsServer } from '../../local/sts-server';
import { apiGatewayEvent } from '../fixtures/apigw-event';
import { BrokerHarness } from '../fixtures/broker-harness';
import { type ClientCertificate, createClientCertificate } from '../fixtures/client-certificates';
import { registerSensitiveValue } from '../fixtures/log-redaction';

const ROLE_ARN = 'arn:aws:iam::123456789012:role/token-broker-token';
const FEDERATION_ENV = [
  'AWS_ENDPOINT_URL_STS',
  'TOKEN_BROKER_FEDERATION_ISSUER',
  'TOKEN_BROKER_FEDERATION_SUBJECT',
  'TOKEN_BROKER_FEDERATION_AUDIENCES',
];
/** An audience the deployment allows besides Entra's global one (the stack's federation.audiences). */
const USGOV_AUDIENCE = 'api://AzureADTokenExchangeUSGov';

/** A PEM key is looked for by one line of its base64 body: JSON logs would escape its line breaks. */
function registerPrivateKey(pem: string): void {
  registerSensitiveValue('private key', pem.split('\n')[5] as string);
}

function federationRoute(h: BrokerHarness) {
  return h.raw(
    'admin',
    apiGatewayEvent({
      method: 'GET',
      resource: '/api/v2/system/federation',
      path: '/api/v2/system/federation',
    }),
  );
}

/** A certificate service body: the client secret replaced by the certificate and its key (undefined drops a field). */
function certificateBody(h: BrokerHarness, name: string, certificate: ClientCertificate, config = {}) {
  return h.serviceBody(
    name,
    {},
    {
      client_secret: undefined,
      credential_type: 'certificate',
      certificate: certificate.certificatePem,
      private_key: certificate.privateKeyPem,
      ...config,
    },
  );
}

function federatedBody(h: BrokerHarness, name: string, config = {}) {
  return h.serviceBody(name, {}, { client_secret: undefined, credential_type: 'federated', ...config });
}

describe('certificate services', () => {
  let h: BrokerHarness;
  let registered: ClientCertificate;
  let other: ClientCertificate;

  beforeAll(async () => {
    h = await BrokerHarness.start();
    [registered, other] = await Promise.all([createClientCertificate(), createClientCertificate()]);
    for (const c of [registered, other]) registerPrivateKey(c.privateKeyPem);
    h.emulator.addCertificate(h.clientId, { pem: registered.certificatePem });
  });
  afterAll(() => h.close());

  it('creates the service and shows the certificate’s public facts, never the key', async () => {
    const created = await h.admin('POST', certificateBody(h, 'cert-facts', registered));
    expect(created.status).toBe(201);
    expect(created.body.config).toMatchObject({
      credential_type: 'certificate',
      certificate: registered.certificatePem.trim(),
      certificate_thumbprint_sha256: registered.thumbprintSha256,
      certificate_not_after: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
    });
    const read = await h.admin('GET', undefined, { name: 'cert-facts' });
    const list = await h.admin('GET');
    for (const raw of [created.raw, read.raw, list.raw]) {
      expect(raw).not.toContain('PRIVATE KEY');
      expect(raw).not.toContain('private_key');
    }
    expect(read.body.config.certificate_thumbprint_sha256).toBe(registered.thumbprintSha256);
  });

  it('gets tokens with the certificate', async () => {
    expect((await h.admin('POST', certificateBody(h, 'cert-token', registered))).status).toBe(201);
    const token = await h.token('GET', 'cert-token');
    expect(token.status).toBe(200);
    expect(h.emulator.requests.at(-1)?.credential).toBe('client_assertion');
  });

  it('answers 502 naming the thumbprint to upload when the app registration does not have the certificate', async () => {
    await h.admin('POST', certificateBody(h, 'cert-unknown', other));
    const token = await h.token('GET', 'cert-unknown');
    expect(token.status).toBe(502);
    expect(token.body.error.message).toMatch(/^AADSTS700027: /);
    expect(token.body.error.message).toContain(other.thumbprintSha256);
  });

  it.each([
    [
      'a key that does not match',
      () => ({ private_key: other.privateKeyPem }),
      'config.private_key: does not match',
    ],
    ['no private key', () => ({ private_key: undefined }), 'config.private_key: is required'],
    [
      'a client secret as well',
      () => ({ client_secret: 'x' }),
      'config.client_secret: not allowed with credential_type "certificate"',
    ],
    [
      'a federation audience',
      () => ({ federation_audience: 'a' }),
      'config.federation_audience: not allowed',
    ],
  ])('refuses a certificate service with %s (400 naming the field)', async (_case, config, message) => {
    const result = await h.admin(
      'POST',
      certificateBody(h, `cert-${randomUUID().slice(0, 8)}`, registered, config()),
    );
    expect(result.status).toBe(400);
    expect(result.body.error.message).toContain(message);
  });

  it('refuses an expired certificate', async () => {
    const expired = await createClientCertificate({
      notBefore: new Date(Date.now() - 9 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    registerPrivateKey(expired.privateKeyPem);
    const result = await h.admin('POST', certificateBody(h, 'cert-expired', expired));
    expect(result.status).toBe(400);
    expect(result.body.error.message).toMatch(/^config\.certificate: expired on /);
  });

  it('refuses certificate fields on a client_secret service', async () => {
    const result = await h.admin(
      'POST',
      h.serviceBody('secret-with-cert', {}, { certificate: registered.certificatePem }),
    );
    expect(result.status).toBe(400);
    expect(result.body.error.message).toContain(
      'config.certificate: not allowed with credential_type "client_secret"',
    );
  });

  it('switches a client_secret service to a certificate with one PATCH, then gets tokens with it', async () => {
    await h.createService('switch-to-cert');
    const patched = await h.admin(
      'PATCH',
      {
        config: {
          credential_type: 'certificate',
          certificate: registered.certificatePem,
          private_key: registered.privateKeyPem,
        },
      },
      { name: 'switch-to-cert' },
    );
    expect(patched.status).toBe(200);
    expect(patched.body.config.credential_type).toBe('certificate');
    expect((await h.token('GET', 'switch-to-cert')).status).toBe(200);
    expect(h.emulator.requests.at(-1)?.credential).toBe('client_assertion');
  });

  it('refuses to switch to certificate without the certificate and key', async () => {
    await h.createService('switch-incomplete');
    const patched = await h.admin(
      'PATCH',
      { config: { credential_type: 'certificate' } },
      { name: 'switch-incomplete' },
    );
    expect(patched.status).toBe(400);
    expect(patched.body.error.message).toContain('config.certificate');
  });
});

describe('federated services', () => {
  let h: BrokerHarness;
  let sts: RunningStsServer;

  beforeAll(async () => {
    sts = await startStsServer({ roleArn: ROLE_ARN });
    h = await BrokerHarness.start({
      env: {
        AWS_ENDPOINT_URL_STS: sts.url,
        TOKEN_BROKER_FEDERATION_ISSUER: sts.issuer,
        TOKEN_BROKER_FEDERATION_SUBJECT: ROLE_ARN,
        TOKEN_BROKER_FEDERATION_AUDIENCES: USGOV_AUDIENCE,
      },
    });
  });
  afterAll(async () => {
    await h.close();
    await sts.close();
    for (const key of FEDERATION_ENV) delete process.env[key];
  });

  it('answers what to enter in the app registration at GET /api/v2/system/federation', async () => {
    const result = await federationRoute(h);
    expect(result.status).toBe(200);
    expect(result.body).toEqual({
      issuer: sts.issuer,
      subject: ROLE_ARN,
      audience: 'api://AzureADTokenExchange',
    });
  });

  it('creates a federated service with no secret and gets tokens once the app trusts the broker', async () => {
    const created = await h.admin('POST', federatedBody(h, 'fed-token'));
    expect(created.status).toBe(201);
    expect(created.body.config.credential_type).toBe('federated');

    const refused = await h.token('GET', 'fed-token');
    expect(refused.status).toBe(502);
    expect(refused.body.error.message).toMatch(/^AADSTS700211: /);
    expect(refused.body.error.message).toContain(`"${sts.issuer}"`);

    const { body: federation } = await federationRoute(h);
    h.emulator.addFederatedCredential(h.clientId, federation);
    await h.admin(
      'PATCH',
      { description: 'after registering the federated credential' },
      { name: 'fed-token' },
    );
    const token = await h.token('GET', 'fed-token');
    expect(token.status).toBe(200);
    expect(h.emulator.requests.at(-1)?.credential).toBe('client_assertion');
  });

  it('retries within the budget while a new federated credential propagates (AADSTS70021)', async () => {
    const clientId = randomUUID();
    h.emulator.registerApp({
      tenantId: h.tenantId,
      clientId,
      clientSecrets: [],
      federatedCredentials: [
        { issuer: sts.issuer, subject: ROLE_ARN, audience: 'api://AzureADTokenExchange', pendingRequests: 1 },
      ],
    });
    await h.admin('POST', federatedBody(h, 'fed-propagating', { client_id: clientId }));
    h.emulator.resetStats();
    const token = await h.token('GET', 'fed-propagating');
    expect(token.status).toBe(200);
    expect(h.emulator.tokenRequestCount).toBe(2);
  });

  it('answers 502 naming issuer, subject and audience when no federated credential matches', async () => {
    const clientId = randomUUID();
    h.emulator.registerApp({
      tenantId: h.tenantId,
      clientId,
      clientSecrets: [],
      federatedCredentials: [
        {
          issuer: sts.issuer,
          subject: 'arn:aws:iam::123456789012:role/other',
          audience: 'api://AzureADTokenExchange',
        },
      ],
    });
    await h.admin('POST', federatedBody(h, 'fed-mismatch', { client_id: clientId }));
    const token = await h.token('GET', 'fed-mismatch');
    expect(token.status).toBe(502);
    expect(token.body.error.message).toContain(
      `issuer "${sts.issuer}", subject "${ROLE_ARN}" and audience "api://AzureADTokenExchange"`,
    );
  });

  it('refuses a client secret on a federated service (400 naming the field)', async () => {
    const result = await h.admin('POST', federatedBody(h, 'fed-secret', { client_secret: 'x' }));
    expect(result.status).toBe(400);
    expect(result.body.error.message).toContain(
      'config.client_secret: not allowed with credential_type "federated"',
    );
  });

  it('refuses a federation_audience the deployment may not request tokens for (400 naming the field)', async () => {
    const result = await h.admin(
      'POST',
      federatedBody(h, 'fed-audience-refused', { federation_audience: 'api://somewhere-else' }),
    );

    expect(result.status).toBe(400);
    expect(result.body.error.message).toMatch(
      /^config\.federation_audience: "api:\/\/somewhere-else" is not an audience this deployment may request/,
    );
    expect((await h.admin('GET', undefined, { name: 'fed-audience-refused' })).status).toBe(404);
  });

  it('accepts a federation_audience the deployment lists', async () => {
    const created = await h.admin(
      'POST',
      federatedBody(h, 'fed-audience-listed', { federation_audience: USGOV_AUDIENCE }),
    );

    expect(created.status).toBe(201);
    expect(created.body.config.federation_audience).toBe(USGOV_AUDIENCE);
  });

  it('switches a client_secret service to federated and drops its secret', async () => {
    await h.createService('to-federated');
    const patched = await h.admin(
      'PATCH',
      { config: { credential_type: 'federated' } },
      { name: 'to-federated' },
    );
    expect(patched.status).toBe(200);
    expect(patched.body.config.credential_type).toBe('federated');
    expect(patched.body.config).not.toHaveProperty('client_secret_arn');
  });
});

describe('a deployment without federation', () => {
  let h: BrokerHarness;

  beforeAll(async () => {
    for (const key of FEDERATION_ENV) delete process.env[key];
    h = await BrokerHarness.start();
  });
  afterAll(() => h.close());

  it('refuses credential_type federated with a 400 that says why', async () => {
    const result = await h.admin('POST', federatedBody(h, 'fed-unavailable'));
    expect(result.status).toBe(400);
    expect(result.body.error.message).toMatch(/^config\.credential_type: "federated" is not available/);
  });

  it('answers 404 at GET /api/v2/system/federation', async () => {
    const result = await federationRoute(h);
    expect(result.status).toBe(404);
    expect(result.body.error.message).toContain('federation is not set up');
  });
});
