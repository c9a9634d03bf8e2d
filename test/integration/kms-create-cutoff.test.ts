import { Logger } from '@aws-lambda-powertools/logger';
import { DescribeKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { AuthorityPolicy } from '../../lib/authority';
import { DynamoDbCreateJournal } from '../../lib/create-journal';
import { KmsSigningKeys } from '../../lib/credentials/kms-signing-keys';
import { KmsCertificates, type KmsCertificatesOptions } from '../../lib/kms-certificates';
import { SecretReferencePolicy } from '../../lib/secret-reference';
import { SecretsManagerSecretStore } from '../../lib/secret-store';
import { ServiceAdministration } from '../../lib/service-admin';
import { DynamoDbServiceRegistry } from '../../lib/service-registry';
import { DynamoDbTokenCache } from '../../lib/token-cache';
import { BlackHole } from '../fixtures/black-hole';
import { brokerDynamoDb, brokerKmsSigning, brokerSecretsManager } from '../fixtures/broker-aws';
import { BrokerHarness } from '../fixtures/broker-harness';
import { BrokerProcess, sameDeploymentAs } from '../fixtures/broker-process';
import { dynamoDbLocalEndpoint } from '../fixtures/dynamodb';

/**
 * A kms_certificate create cut off after KMS created its key (the broker process killed while KMS hangs on the
 * next call, before the service is written) leaves a key and a journal intent that names it; the next create,
 * once the intent has expired, schedules that key's deletion. A rotation that fails after CreateKey schedules
 * its new key's deletion at once. Real servers: DynamoDB Local, the local KMS and Secrets Manager, a real
 * `npm start` process.
 */

const PREFIX = 'token-broker/test/services/';
const local = { region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } };

let h: BrokerHarness;
let kms: KMSClient;
let hole: BlackHole;
let broker: BrokerProcess;
/** The broker clients the tests opened (kept-alive connections to close). */
const opened: Array<{ destroy(): void }> = [];

beforeAll(async () => {
  h = await BrokerHarness.start();
  kms = new KMSClient({ endpoint: h.kms.url, ...local });
  // Prepare: KMS answers CreateKey and then hangs; the broker is killed as soon as the next call is swallowed.
  hole = await BlackHole.start(h.kms.url);
  broker = await BrokerProcess.start({ env: sameDeploymentAs(h, { AWS_ENDPOINT_URL_KMS: hole.url }) });
  hole.silenceAfter(1);
  const swallowed = hole.nextSwallowed();
  const pending = broker
    .request('POST', '/api/v2/system/service', {
      body: h.serviceBody('kms-cut', {}, { client_secret: undefined, credential_type: 'kms_certificate' }),
    })
    .catch(() => undefined);
  await swallowed;
  broker.kill();
  await pending;
}, 60_000);

afterAll(async () => {
  broker?.kill();
  await hole?.close();
  kms.destroy();
  for (const client of opened) client.destroy();
  await h.close();
});

/** The keys the local KMS holds, with their state. */
async function localKeys(): Promise<Array<{ arn: string; state?: string }>> {
  const { readdir, readFile } = await import('node:fs/promises');
  const path = await import('node:path');
  const directory = path.join(h.dataDir, 'kms');
  const files = (await readdir(directory)).filter((f) => f.startsWith('asym-'));
  return Promise.all(
    files.map(async (f) => {
      const arn = JSON.parse(await readFile(path.join(directory, f), 'utf8')).arn as string;
      const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: arn }));
      return { arn, state: KeyMetadata?.KeyState };
    }),
  );
}

function administration(
  now: () => number,
  issuer: KmsCertificatesOptions['issuer'] = async () =>
    (await import('../../lib/credentials/kms-certificate-issuer')).issueKmsCertificate,
): ServiceAdministration {
  const ddb = brokerDynamoDb(dynamoDbLocalEndpoint());
  const secrets = brokerSecretsManager(h.secretsManagerUrl);
  const signing = brokerKmsSigning(h.kms.url);
  opened.push(ddb, secrets, signing);
  const logger = new Logger({ serviceName: 'token-broker-test', logLevel: 'SILENT' });
  return new ServiceAdministration({
    registry: new DynamoDbServiceRegistry({ client: ddb, tableName: h.tables.servicesTable }),
    secrets: new SecretsManagerSecretStore({ client: secrets }),
    cache: new DynamoDbTokenCache({ client: ddb, tableName: h.tables.tokenCacheTable }),
    journal: new DynamoDbCreateJournal({ client: ddb, tableName: h.tables.servicesTable }),
    authority: new AuthorityPolicy(new URL(h.emulator.url).host),
    secretReferences: new SecretReferencePolicy(PREFIX),
    logger,
    secretPrefix: PREFIX,
    kms: new KmsCertificates({
      keys: new KmsSigningKeys(signing, { brokerId: 'token-broker-local' }),
      issuer,
      logger,
      now,
      brokerId: 'token-broker-local',
    }),
    now,
  });
}

it('leaves the created key enabled and no service at first', async () => {
  const keys = await localKeys();
  expect(keys).toHaveLength(1);
  expect(keys[0]?.state).toBe('Enabled');
  expect((await h.admin('GET', undefined, { name: 'kms-cut' })).status).toBe(404);
});

it('has the key scheduled for deletion by the next create once its intent has expired', async () => {
  // Act: the next create, an hour later (every intent has expired by then)
  await administration(() => Date.now() + 60 * 60_000).create(h.serviceBody('kms-after-cut'));
  // Assess
  const keys = await localKeys();
  expect(keys).toHaveLength(1);
  expect(keys[0]?.state).toBe('PendingDeletion');
});

it('schedules the deletion of the new key when a rotation fails after CreateKey, and leaves the service as it was', async () => {
  // Prepare: a service, and an administration whose certificate issuer fails (a fault no local server produces)
  expect(
    (
      await h.admin(
        'POST',
        h.serviceBody('kms-rot', {}, { client_secret: undefined, credential_type: 'kms_certificate' }),
      )
    ).status,
  ).toBe(201);
  const before = new Set((await localKeys()).map((k) => k.arn));
  const failing = administration(Date.now, async () => {
    throw new Error('the X.509 module could not be loaded');
  });
  // Act
  await expect(failing.issueNextCertificate('kms-rot')).rejects.toThrow(
    'issuing the certificate through KMS failed',
  );
  // Assess
  const created = (await localKeys()).filter((k) => !before.has(k.arn));
  expect(created).toEqual([{ arn: expect.any(String), state: 'PendingDeletion' }]);
  const read = await h.admin('GET', undefined, { name: 'kms-rot' });
  expect(read.body.config).not.toHaveProperty('next_certificate');
});

it('has the new key of a rotation cut off after CreateKey scheduled for deletion by a later create, the service kept', async () => {
  // Prepare: a kms_certificate service, and a broker process whose KMS answers CreateKey and then hangs; the
  // process is killed as soon as the next KMS call (GetPublicKey, for the certificate) is swallowed
  const name = 'kms-rot-cut';
  expect(
    (
      await h.admin(
        'POST',
        h.serviceBody(name, {}, { client_secret: undefined, credential_type: 'kms_certificate' }),
      )
    ).status,
  ).toBe(201);
  const before = new Set((await localKeys()).map((k) => k.arn));
  const rotationHole = await BlackHole.start(h.kms.url);
  const rotating = await BrokerProcess.start({
    env: sameDeploymentAs(h, { AWS_ENDPOINT_URL_KMS: rotationHole.url }),
  });
  try {
    rotationHole.silenceAfter(1);
    const swallowed = rotationHole.nextSwallowed();
    const pending = rotating
      .request('POST', `/api/v2/system/service/${name}/certificate`)
      .catch(() => undefined);
    await swallowed;
    rotating.kill();
    await pending;
  } finally {
    rotating.kill();
    await rotationHole.close();
  }
  const created = (await localKeys()).filter((k) => !before.has(k.arn));
  expect(created).toEqual([{ arn: expect.any(String), state: 'Enabled' }]);

  // Act: the next create, an hour later (every intent has expired by then)
  await administration(() => Date.now() + 60 * 60_000).create(h.serviceBody('kms-after-rotation-cut'));

  // Assess: the orphan key is retired, the service and its active key are untouched
  expect((await localKeys()).filter((k) => !before.has(k.arn))).toEqual([
    { arn: created[0]?.arn, state: 'PendingDeletion' },
  ]);
  const read = await h.admin('GET', undefined, { name });
  expect(read.status).toBe(200);
  expect(read.body.config).not.toHaveProperty('next_certificate');
  // The active key still signs: Entra (the emulator) refuses only because its certificate is not registered.
  expect((await h.token('GET', name)).body.error.message).toMatch(/^AADSTS700027: /);
}, 60_000);
