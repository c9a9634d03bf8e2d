/**
 * The authorization code flow with credentials other than a client secret, through the production handlers
 * (admin and delegated) against DynamoDB Local, the local KMS and Secrets Manager servers and the Entra emulator
 * (which verifies every client assertion against the certificates registered on the app): the code and refresh
 * token redemptions of a kms_certificate service are signed by kms:Sign; federated is refused for this grant.
 */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { apiGatewayEvent } from '../fixtures/apigw-event';
import { BrokerHarness } from '../fixtures/broker-harness';
import { consentWithoutBrowser } from '../fixtures/entra-emulator-delegated';

const BASE = 'http://127.0.0.1:9';
const SERVICE = 'mailkms';
const USER = {
  tenantId: '',
  oid: '0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5',
  preferredUsername: 'lidia@contoso.onmicrosoft.com',
  name: 'Lidia Holloway',
};
let h: BrokerHarness;

beforeAll(async () => {
  h = await BrokerHarness.start({ env: { TOKEN_BROKER_PUBLIC_BASE_URL: BASE } });
  h.emulator.registerApp({
    tenantId: h.tenantId,
    clientId: h.clientId,
    clientSecrets: [h.clientSecret],
    redirectUris: [`${BASE}/api/v2/${SERVICE}/sso`],
  });
  h.emulator.delegated.addUser({ ...USER, tenantId: h.tenantId });
});

afterAll(() => h.close());

function event(resource: string, query: Record<string, string>, method = 'GET'): APIGatewayProxyEvent {
  return apiGatewayEvent({
    method,
    resource,
    path: resource.replace('{service}', SERVICE),
    pathParameters: { service: SERVICE },
    query,
    identity: { userArn: 'arn:aws:iam::111122223333:role/workload', caller: 'AROAEXAMPLE:job' },
  });
}

const delegated = (resource: string, query: Record<string, string>) =>
  h.raw('delegated', event(`/api/v2/{service}/${resource}`, query));

/** Runs the consent of USER for `userKey` over HTTP (authorize, the emulator's consent, the callback). */
async function connect(userKey: string) {
  const started = await delegated('authorize', { user: userKey });
  const landing = await consentWithoutBrowser(
    (started.body as { authorization_url: string }).authorization_url,
    { userOid: USER.oid, accept: true },
  );
  return delegated('sso', Object.fromEntries(landing.searchParams));
}

describe('authorization code flow with a kms_certificate service', () => {
  it('redeems the code and the refresh token with client assertions signed by kms:Sign', async () => {
    const created = await h.admin(
      'POST',
      h.serviceBody(
        SERVICE,
        {},
        { client_secret: undefined, credential_type: 'kms_certificate', grant_type: 'authorization_code' },
      ),
    );
    expect(created.status).toBe(201);
    h.emulator.addCertificate(h.clientId, { pem: created.body.config.certificate as string });

    const callback = await connect('lidia');
    expect(callback.status).toBe(200);
    expect(h.emulator.requests.at(-1)).toMatchObject({
      grantType: 'authorization_code',
      credential: 'client_assertion',
    });

    // Asking for more lifetime than the cached token has left makes the broker redeem the refresh token.
    const before = h.emulator.requests.length;
    const token = await delegated('user_token', { user: 'lidia', min_ttl: '3599' });
    expect(token.status).toBe(200);
    expect(h.emulator.requests.slice(before)).toEqual([
      expect.objectContaining({ grantType: 'refresh_token', credential: 'client_assertion' }),
    ]);
  });
});

describe('authorization code flow with a federated credential', () => {
  it('is refused at the write (400 naming credential_type): the delegated role is not the trusted subject', async () => {
    const refused = await h.admin(
      'POST',
      h.serviceBody(
        'mailfed',
        {},
        { client_secret: undefined, credential_type: 'federated', grant_type: 'authorization_code' },
      ),
    );

    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toContain(
      'config.credential_type: "federated" serves the client credentials grant only',
    );
  });
});
