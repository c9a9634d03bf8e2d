/**
 * The credential modules (lib/credentials/) against real servers: the Entra emulator verifies their assertions,
 * the local KMS signs for the kms_certificate credential and the local STS issues the federated token. Token
 * requests are sent by the production EntraTokenClient; the request body is observed (not changed) on its way
 * out, to pin the assertion's shape.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KMSClient, ListResourceTagsCommand } from '@aws-sdk/client-kms';
import { compactVerify, decodeJwt, decodeProtectedHeader } from 'jose';
import { certificateCredential } from '../../lib/credentials/certificate';
import type { ClientCredential } from '../../lib/credentials/credential';
import { federatedCredential } from '../../lib/credentials/federated';
import { kmsCertificateCredential } from '../../lib/credentials/kms-certificate';
import { issueKmsCertificate } from '../../lib/credentials/kms-certificate-issuer';
import { KmsSigningKeys } from '../../lib/credentials/kms-signing-keys';
import { StsWebIdentityTokenSource } from '../../lib/credentials/sts-web-identity';
import { EntraTokenClient } from '../../lib/entra-token-client';
import { CredentialUnavailableError } from '../../lib/errors';
import { type RunningKmsServer, startKmsServer } from '../../local/kms-server';
import { type RunningStsServer, startStsServer } from '../../local/sts-server';
import { brokerKmsSigning, brokerSts } from '../fixtures/broker-aws';
import { type ClientCertificate, createClientCertificate } from '../fixtures/client-certificates';
import { EntraEmulator } from '../fixtures/entra-emulator';

const TENANT = '8a1c2a9e-4b7d-4e21-9c3a-0d5e8f7a1b2c';
const CLIENT_ID = '3b9d7c4e-3a2f-4c61-8e5d-1f2a3b4c5d6e';
const ROLE_ARN = 'arn:aws:iam::123456789012:role/token-broker-token';
const BROKER_ID = 'token-broker-test';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const local = { region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } };

let emulator: EntraEmulator;
let kmsServer: RunningKmsServer;
let stsServer: RunningStsServer;
let kms: KMSClient;
/** The broker's own KMS client (functions/aws-clients.ts), as the functions give it to KmsSigningKeys. */
let signing: ReturnType<typeof brokerKmsSigning>;
let sts: ReturnType<typeof brokerSts>;
let dataDir: string;
let imported: ClientCertificate;
/** Bodies of the token requests sent, as observed on the wire. */
const sent: URLSearchParams[] = [];

const observingFetch: typeof fetch = async (input, init) => {
  sent.push(new URLSearchParams(String(init?.body)));
  return fetch(input, init);
};

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'credential-types-'));
  [imported, kmsServer, stsServer] = await Promise.all([
    createClientCertificate(),
    startKmsServer({ dataDir }),
    startStsServer({ roleArn: ROLE_ARN }),
  ]);
  kms = new KMSClient({ endpoint: kmsServer.url, ...local });
  signing = brokerKmsSigning(kmsServer.url);
  sts = brokerSts(stsServer.url);
  emulator = await EntraEmulator.start({
    apps: [
      {
        tenantId: TENANT,
        clientId: CLIENT_ID,
        clientSecrets: [],
        certificates: [{ pem: imported.certificatePem }],
        federatedCredentials: [
          { issuer: stsServer.issuer, subject: ROLE_ARN, audience: 'api://AzureADTokenExchange' },
        ],
      },
    ],
  });
});

afterAll(async () => {
  kms.destroy();
  signing.destroy();
  sts.destroy();
  await Promise.all([emulator.stop(), kmsServer.close(), stsServer.close()]);
  await rm(dataDir, { recursive: true, force: true });
});

beforeEach(() => {
  sent.length = 0;
});

function requestToken(credential: ClientCredential) {
  return new EntraTokenClient({ timeoutMs: 5000, fetch: observingFetch }).requestToken({
    tokenEndpoint: new URL(emulator.tokenEndpoint(TENANT)),
    clientId: CLIENT_ID,
    credential,
    scope: 'https://graph.microsoft.com/.default',
  });
}

/** The client assertion of the last request sent. */
function lastAssertion(): string {
  const body = sent.at(-1) as URLSearchParams;
  expect(body.get('client_assertion_type')).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
  expect(body.has('client_secret')).toBe(false);
  return body.get('client_assertion') as string;
}

/** Asserts the header and claims Entra documents for private_key_jwt. */
function expectEntraAssertionShape(assertion: string, thumbprint: string): void {
  expect(decodeProtectedHeader(assertion)).toEqual({ alg: 'PS256', typ: 'JWT', 'x5t#S256': thumbprint });
  const claims = decodeJwt(assertion);
  expect(claims).toMatchObject({ aud: emulator.tokenEndpoint(TENANT), iss: CLIENT_ID, sub: CLIENT_ID });
  expect(claims.jti).toMatch(UUID);
  expect(claims.nbf).toBe(claims.iat);
  expect((claims.exp as number) - (claims.iat as number)).toBe(600);
}

describe('certificate (imported key)', () => {
  it('gets a token with a PS256 assertion naming the certificate by x5t#S256', async () => {
    const credential = certificateCredential({
      certificatePem: imported.certificatePem,
      privateKeyPem: imported.privateKeyPem,
    });
    const token = await requestToken(credential);
    expect(token.tokenType).toBe('Bearer');
    expectEntraAssertionShape(lastAssertion(), imported.thumbprintSha256);
    expect(credential.facts).toMatchObject({
      type: 'certificate',
      certificateThumbprintSha256: imported.thumbprintSha256,
    });
  });

  it('sends a fresh jti in every assertion', async () => {
    const credential = certificateCredential({
      certificatePem: imported.certificatePem,
      privateKeyPem: imported.privateKeyPem,
    });
    await requestToken(credential);
    await requestToken(credential);
    const [first, second] = sent.map((b) => decodeJwt(b.get('client_assertion') as string).jti);
    expect(first).not.toBe(second);
  });

  it('is refused with AADSTS700027 when the certificate is not registered on the app', async () => {
    const other = await createClientCertificate();
    const credential = certificateCredential({
      certificatePem: other.certificatePem,
      privateKeyPem: other.privateKeyPem,
    });
    await expect(requestToken(credential)).rejects.toMatchObject({
      name: 'IdentityProviderError',
      context: { error_codes: [700027] },
    });
  });
});

describe('kms_certificate (key in KMS)', () => {
  let keys: KmsSigningKeys;
  let keyArn: string;
  let certificatePem: string;
  const issuedAt = Date.UTC(2026, 10, 1);

  beforeAll(async () => {
    keys = new KmsSigningKeys(signing, { brokerId: BROKER_ID });
    keyArn = await keys.create('graph', 'RSA_2048');
    certificatePem = await issueKmsCertificate({
      keys,
      keyArn,
      commonName: 'graph',
      validityDays: 365,
      now: issuedAt,
    });
  });

  it('creates the key tagged for its service', async () => {
    const { Tags } = await kms.send(new ListResourceTagsCommand({ KeyId: keyArn }));
    expect(Tags).toEqual([
      { TagKey: 'token-broker:broker', TagValue: BROKER_ID },
      { TagKey: 'token-broker:service', TagValue: 'graph' },
    ]);
  });

  it('issues a self-signed certificate for the KMS key: CN = the service, validity as asked', async () => {
    const certificate = new X509Certificate(certificatePem);
    const publicKey = createPublicKey({
      key: Buffer.from(await keys.publicKey(keyArn)),
      format: 'der',
      type: 'spki',
    });
    expect(certificate.subject).toBe('CN=graph');
    expect(certificate.issuer).toBe('CN=graph');
    expect(Date.parse(certificate.validFrom)).toBe(issuedAt);
    expect(Date.parse(certificate.validTo)).toBe(issuedAt + 365 * 86_400_000);
    expect(certificate.publicKey.equals(publicKey)).toBe(true);
    expect(certificate.verify(publicKey)).toBe(true);
  });

  it('gets a token with an assertion KMS signed, once the certificate is registered on the app', async () => {
    const thumbprint = (await import('../fixtures/entra-assertions')).thumbprints(certificatePem).sha256;
    const credential = kmsCertificateCredential({
      keys,
      certificate: { keyArn, thumbprintSha256: thumbprint, notAfter: new Date().toISOString() },
    });
    await expect(requestToken(credential)).rejects.toMatchObject({ context: { error_codes: [700027] } });

    emulator.addCertificate(CLIENT_ID, { pem: certificatePem });
    const token = await requestToken(credential);

    expect(token.tokenType).toBe('Bearer');
    const assertion = lastAssertion();
    expectEntraAssertionShape(assertion, thumbprint);
    await expect(
      compactVerify(assertion, new X509Certificate(certificatePem).publicKey),
    ).resolves.toBeDefined();
  });
});

it('answers CredentialUnavailableError naming KMS’s refusal when the key can no longer sign', async () => {
  const keys = new KmsSigningKeys(signing, { brokerId: BROKER_ID });
  const keyArn = await keys.create('retired', 'RSA_2048');
  await keys.scheduleDeletion(keyArn, 7);
  const credential = kmsCertificateCredential({
    keys,
    certificate: { keyArn, thumbprintSha256: 'x', notAfter: new Date().toISOString() },
  });
  const error = await requestToken(credential).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(CredentialUnavailableError);
  expect((error as Error).message).toContain('KMSInvalidStateException');
  expect(sent).toHaveLength(0);
});

describe('federated (AWS STS web identity token)', () => {
  it('sends the STS token of the broker’s role as the client assertion and gets a token', async () => {
    const credential = federatedCredential({ source: async () => new StsWebIdentityTokenSource(sts) });
    const token = await requestToken(credential);
    expect(token.tokenType).toBe('Bearer');
    const claims = decodeJwt(lastAssertion());
    expect(claims).toMatchObject({ iss: stsServer.issuer, sub: ROLE_ARN, aud: 'api://AzureADTokenExchange' });
    expect(credential.facts.federation).toEqual({
      issuer: stsServer.issuer,
      subject: ROLE_ARN,
      audience: 'api://AzureADTokenExchange',
    });
  });

  it('asks STS for the configured audience', async () => {
    const credential = federatedCredential({
      source: async () => new StsWebIdentityTokenSource(sts),
      audience: 'api://AzureADTokenExchangeUSGov',
    });
    await expect(requestToken(credential)).rejects.toMatchObject({ context: { error_codes: [70021] } });
    expect(decodeJwt(lastAssertion()).aud).toBe('api://AzureADTokenExchangeUSGov');
  });

  it('tells the administrator to enable outbound federation when the account has not', async () => {
    const disabled = await startStsServer({ roleArn: ROLE_ARN, federationDisabled: true });
    const client = brokerSts(disabled.url);
    try {
      const credential = federatedCredential({ source: async () => new StsWebIdentityTokenSource(client) });
      const error = await requestToken(credential).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CredentialUnavailableError);
      expect((error as Error).message).toContain('aws iam enable-outbound-web-identity-federation');
    } finally {
      client.destroy();
      await disabled.close();
    }
  });
});
