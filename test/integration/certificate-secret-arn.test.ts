/**
 * `config.certificate_secret_arn`: a certificate service whose certificate and key live in a secret the
 * administrator created, under the same rules as `client_secret_arn`. The production handlers against the local
 * Secrets Manager server, DynamoDB Local and the Entra emulator (which verifies the client assertion against the
 * certificates registered for the app).
 */
import { CreateSecretCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { BrokerHarness } from '../fixtures/broker-harness';
import { type ClientCertificate, createClientCertificate } from '../fixtures/client-certificates';
import { registerSensitiveValue } from '../fixtures/log-redaction';
import { listAllSecrets, secretsManagerClient } from '../fixtures/secrets-manager';

/** The harness's secret name prefix (BrokerHarness sets TOKEN_BROKER_SECRET_PREFIX to it). */
const PREFIX = 'token-broker/test/services/';

let h: BrokerHarness;
let sm: SecretsManagerClient;
let registered: ClientCertificate;
let other: ClientCertificate;
let n = 0;

/** A PEM key is looked for by one line of its base64 body: JSON logs would escape its line breaks. */
function registerPrivateKey(pem: string): void {
  registerSensitiveValue('private key', pem.split('\n')[5] as string);
}

/** Creates a secret under the broker's prefix holding `value`; returns its complete ARN. */
async function secretHolding(value: string): Promise<string> {
  const out = await sm.send(
    new CreateSecretCommand({ Name: `${PREFIX}imported/cert-${++n}`, SecretString: value }),
  );
  return out.ARN as string;
}

const documentOf = (certificate: ClientCertificate, privateKey = certificate.privateKeyPem) =>
  JSON.stringify({ certificate: certificate.certificatePem, private_key: privateKey });

function body(name: string, config: Record<string, unknown>) {
  return h.serviceBody(name, {}, { client_secret: undefined, credential_type: 'certificate', ...config });
}

beforeAll(async () => {
  h = await BrokerHarness.start();
  sm = secretsManagerClient(h.secretsManagerUrl);
  [registered, other] = await Promise.all([createClientCertificate(), createClientCertificate()]);
  for (const c of [registered, other]) registerPrivateKey(c.privateKeyPem);
  h.emulator.addCertificate(h.clientId, { pem: registered.certificatePem });
});
afterAll(async () => {
  sm.destroy();
  await h.close();
});

describe('certificate_secret_arn', () => {
  it('creates a certificate service from the secret, shows its ARN and public facts, and gets tokens with it', async () => {
    const arn = await secretHolding(documentOf(registered));
    const created = await h.admin('POST', body('cert-arn', { certificate_secret_arn: arn }));

    expect(created.status).toBe(201);
    expect(created.body.config).toMatchObject({
      credential_type: 'certificate',
      certificate_secret_arn: arn,
      certificate_thumbprint_sha256: registered.thumbprintSha256,
    });
    expect(created.body.config.client_secret_arn).toBeUndefined();
    expect(created.raw).not.toContain('PRIVATE KEY');
    const token = await h.token('GET', 'cert-arn');
    expect(token.status).toBe(200);
    expect(h.emulator.requests.at(-1)?.credential).toBe('client_assertion');
  });

  it('never copies the secret: the broker creates no managed secret for the service', async () => {
    const arn = await secretHolding(documentOf(registered));
    expect((await h.admin('POST', body('cert-nocopy', { certificate_secret_arn: arn }))).status).toBe(201);

    const names = (await listAllSecrets(sm)).map((s) => s.Name ?? '');
    expect(names.filter((name) => name.startsWith(`${PREFIX}cert-nocopy/`))).toEqual([]);
  });

  it.each([
    [
      'a key that does not match the certificate',
      () => documentOf(registered, other.privateKeyPem),
      /private_key\): does not match the secret's certificate$/,
    ],
    [
      'a plain string instead of the JSON document',
      () => 'just-a-client-secret',
      /must hold JSON \{"certificate"/,
    ],
    [
      'JSON without the key',
      () => JSON.stringify({ certificate: registered.certificatePem }),
      /must hold JSON/,
    ],
  ])('refuses a secret holding %s (400 naming certificate_secret_arn)', async (_case, value, message) => {
    const arn = await secretHolding(value());
    const result = await h.admin('POST', body(`cert-bad-${++n}`, { certificate_secret_arn: arn }));

    expect(result.status).toBe(400);
    expect(result.body.error.message).toMatch(/^config\.certificate_secret_arn/);
    expect(result.body.error.message).toMatch(message);
    expect(result.raw).not.toContain('PRIVATE KEY');
  });

  it('refuses a secret holding an expired certificate', async () => {
    const expired = await createClientCertificate({
      notBefore: new Date(Date.now() - 9 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    registerPrivateKey(expired.privateKeyPem);
    const arn = await secretHolding(documentOf(expired));
    const result = await h.admin('POST', body('cert-arn-expired', { certificate_secret_arn: arn }));

    expect(result.status).toBe(400);
    expect(result.body.error.message).toMatch(
      /^config\.certificate_secret_arn \(the secret's certificate\): expired on /,
    );
  });

  it('refuses another service’s managed secret, as for client_secret_arn', async () => {
    const victim = await h.admin(
      'POST',
      body('cert-victim', { certificate: registered.certificatePem, private_key: registered.privateKeyPem }),
    );
    expect(victim.status).toBe(201);
    const managed = (await listAllSecrets(sm)).find((s) => s.Name?.startsWith(`${PREFIX}cert-victim/`));
    const result = await h.admin('POST', body('cert-thief', { certificate_secret_arn: managed?.ARN }));

    expect(result.status).toBe(400);
    expect(result.body.error.message).toMatch(
      /^config\.certificate_secret_arn: is a secret the broker manages for another service/,
    );
  });

  it('refuses certificate_secret_arn together with an inline certificate, and on a client_secret service', async () => {
    const arn = await secretHolding(documentOf(registered));
    const both = await h.admin(
      'POST',
      body('cert-both', { certificate_secret_arn: arn, certificate: registered.certificatePem }),
    );
    const wrongType = await h.admin(
      'POST',
      h.serviceBody('cert-wrongtype', {}, { client_secret: undefined, certificate_secret_arn: arn }),
    );

    expect(both.status).toBe(400);
    expect(both.body.error.message).toContain('config.certificate: send either certificate_secret_arn');
    expect(wrongType.status).toBe(400);
    expect(wrongType.body.error.message).toContain(
      'config.certificate_secret_arn: not allowed with credential_type "client_secret"',
    );
  });

  it('switches an inline certificate service to a referenced secret with one PATCH and drops its managed secret', async () => {
    await h.admin(
      'POST',
      body('cert-switch', { certificate: registered.certificatePem, private_key: registered.privateKeyPem }),
    );
    const arn = await secretHolding(documentOf(registered));
    const patched = await h.admin(
      'PATCH',
      { config: { certificate_secret_arn: arn } },
      { name: 'cert-switch' },
    );

    expect(patched.status).toBe(200);
    expect(patched.body.config.certificate_secret_arn).toBe(arn);
    const managed = (await listAllSecrets(sm)).filter((s) => s.Name?.startsWith(`${PREFIX}cert-switch/`));
    expect(managed.map((s) => s.DeletedDate !== undefined)).toEqual([true]);
    expect((await h.token('GET', 'cert-switch')).status).toBe(200);
  });
});
