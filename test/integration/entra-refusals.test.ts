/**
 * Entra's refusals of certificate and federated credentials, as the broker reports them: each becomes an
 * IdentityProviderError (502) whose message tells the administrator what to fix, followed by Entra's own words.
 * The refusals come from the emulator's real checks where the broker can provoke them (an unregistered
 * certificate, a skewed clock, an untrusted issuer...), and from Entra's exact answer played by the emulator
 * where the broker's own assertions cannot be wrong that way (another client id, a revoked certificate).
 */
import { certificateCredential, certificateFacts } from '../../lib/credentials/certificate';
import type { ClientCredential } from '../../lib/credentials/credential';
import { federatedCredential } from '../../lib/credentials/federated';
import { StsWebIdentityTokenSource } from '../../lib/credentials/sts-web-identity';
import { EntraTokenClient } from '../../lib/entra-token-client';
import { IdentityProviderError } from '../../lib/errors';
import { type RunningStsServer, startStsServer } from '../../local/sts-server';
import { brokerSts } from '../fixtures/broker-aws';
import { type ClientCertificate, createClientCertificate } from '../fixtures/client-certificates';
import { EntraEmulator } from '../fixtures/entra-emulator';

const TENANT = '9a1c2a9e-4b7d-4e21-9c3a-0d5e8f7a1b2c';
const CLIENT_ID = '4b9d7c4e-3a2f-4c61-8e5d-1f2a3b4c5d6e';
const FEDERATED_ID = '5b9d7c4e-3a2f-4c61-8e5d-1f2a3b4c5d6e';
const ROLE_ARN = 'arn:aws:iam::123456789012:role/token-broker-token';

let emulator: EntraEmulator;
let stsServer: RunningStsServer;
let sts: ReturnType<typeof brokerSts>;
let registered: ClientCertificate;
let unregistered: ClientCertificate;
let expired: ClientCertificate;

beforeAll(async () => {
  [registered, unregistered, expired, stsServer] = await Promise.all([
    createClientCertificate(),
    createClientCertificate(),
    createClientCertificate({
      notBefore: new Date(Date.now() - 9 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    }),
    startStsServer({ roleArn: ROLE_ARN }),
  ]);
  sts = brokerSts(stsServer.url);
  emulator = await EntraEmulator.start({
    apps: [
      {
        tenantId: TENANT,
        clientId: CLIENT_ID,
        clientSecrets: [],
        certificates: [{ pem: registered.certificatePem }, { pem: expired.certificatePem }],
      },
      { tenantId: TENANT, clientId: FEDERATED_ID, clientSecrets: [] },
    ],
  });
});

afterAll(async () => {
  sts.destroy();
  await Promise.all([emulator.stop(), stsServer.close()]);
});

beforeEach(() => emulator.clearFaults());

const certificate = (c: ClientCertificate, now?: () => number) =>
  certificateCredential({ certificatePem: c.certificatePem, privateKeyPem: c.privateKeyPem, now });
const federated = () => federatedCredential({ source: async () => new StsWebIdentityTokenSource(sts) });

async function refusal(credential: ClientCredential, clientId = CLIENT_ID): Promise<IdentityProviderError> {
  const error = await new EntraTokenClient({ timeoutMs: 5000 })
    .requestToken({
      tokenEndpoint: new URL(emulator.tokenEndpoint(TENANT)),
      clientId,
      credential,
      scope: 'https://graph.microsoft.com/.default',
    })
    .catch((e: unknown) => e);
  expect(error).toBeInstanceOf(IdentityProviderError);
  return error as IdentityProviderError;
}

/** Plays Entra's answer with `code` for the next request. */
function entraAnswers(code: number, error = 'invalid_client', status = 401): void {
  emulator.failNext({
    kind: 'json',
    status,
    body: {
      error,
      error_description: `AADSTS${code}: as Entra says it.\r\nTrace ID: x`,
      error_codes: [code],
    },
  });
}

it('AADSTS700027 for a certificate: names the thumbprint to upload to the app registration', async () => {
  const error = await refusal(certificate(unregistered));
  expect(error.message).toMatch(/^AADSTS700027: Entra did not accept the client assertion/);
  expect(error.message).toContain(unregistered.thumbprintSha256);
  expect(error.message).toContain(CLIENT_ID);
  expect(error.message).toContain('[Entra: invalid_client: AADSTS700027');
  expect(error.retryable).toBe(false);
});

it('AADSTS700024: the assertion was outside its time range (a clock 20 minutes behind)', async () => {
  const error = await refusal(certificate(registered, () => Date.now() - 20 * 60_000));
  expect(error.message).toMatch(/^AADSTS700024: .*clock/);
});

it('AADSTS700021: tells the administrator to check config.client_id', async () => {
  entraAnswers(700021);
  expect((await refusal(certificate(registered))).message).toMatch(/^AADSTS700021: .*config\.client_id/);
});

it('AADSTS700023: names the token endpoint used as the audience and the settings behind it', async () => {
  entraAnswers(700023);
  const error = await refusal(certificate(registered));
  expect(error.message).toContain(emulator.tokenEndpoint(TENANT));
  expect(error.message).toContain('config.cloud');
});

it('AADSTS7000214: the certificate was revoked', async () => {
  entraAnswers(7000214);
  const error = await refusal(certificate(registered));
  expect(error.message).toMatch(/^AADSTS7000214: .*revoked/);
  expect(error.message).toContain(registered.thumbprintSha256);
});

it('AADSTS7000277: the certificate was revoked', async () => {
  entraAnswers(7000277);
  expect((await refusal(certificate(registered))).message).toMatch(/^AADSTS7000277: .*revoked/);
});

it('AADSTS1000502: the certificate is outside its validity, with the date it ended', async () => {
  const error = await refusal(certificate(expired));
  expect(error.message).toMatch(/^AADSTS1000502: .*outside its validity period/);
  expect(error.message).toContain(`not after ${certificateFacts(expired.certificatePem).notAfter}`);
});

it('AADSTS700211: names the issuer the app registration does not trust', async () => {
  const error = await refusal(federated(), FEDERATED_ID);
  expect(error.message).toMatch(/^AADSTS700211: /);
  expect(error.message).toContain(`"${stsServer.issuer}"`);
});

it('AADSTS70021: names issuer, subject and audience to register, and is retryable (propagation)', async () => {
  emulator.addFederatedCredential(FEDERATED_ID, {
    issuer: stsServer.issuer,
    subject: 'arn:aws:iam::123456789012:role/someone-else',
    audience: 'api://AzureADTokenExchange',
  });
  const error = await refusal(federated(), FEDERATED_ID);
  expect(error.message).toMatch(/^AADSTS70021: no federated identity credential/);
  expect(error.message).toContain(
    `issuer "${stsServer.issuer}", subject "${ROLE_ARN}" and audience "api://AzureADTokenExchange"`,
  );
  expect(error.retryable).toBe(true);
});

it('AADSTS700027 for a federated token: points at the issuer', async () => {
  entraAnswers(700027);
  const error = await refusal(federated(), FEDERATED_ID);
  expect(error.message).toMatch(
    /^AADSTS700027: Entra could not verify the signature of the broker's federated token/,
  );
  expect(error.message).toContain(stsServer.issuer);
});
