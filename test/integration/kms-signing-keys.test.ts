/**
 * KmsSigningKeys against the local KMS (local/kms-asymmetric.ts) over real sockets: every key it creates carries
 * the tag naming its broker instance, which IAM matches (aws:RequestTag on CreateKey, aws:ResourceTag on Sign and
 * ScheduleKeyDeletion) so that two brokers in one account never use each other's keys.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DescribeKeyCommand, KMSClient, ListResourceTagsCommand } from '@aws-sdk/client-kms';
import { BROKER_INSTANCE_TAG, BROKER_KEY_TAG, KmsSigningKeys } from '../../lib/credentials/kms-signing-keys';
import { type RunningKmsServer, startKmsServer } from '../../local/kms-server';
import { brokerKmsSigning } from '../fixtures/broker-aws';

let dataDir: string;
let server: RunningKmsServer;
let kms: KMSClient;
/** The broker's own KMS client (functions/aws-clients.ts), which KmsSigningKeys runs on in the functions. */
let signing: ReturnType<typeof brokerKmsSigning>;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kms-signing-keys-'));
  server = await startKmsServer({ dataDir });
  kms = new KMSClient({
    endpoint: server.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  signing = brokerKmsSigning(server.url);
});

afterAll(async () => {
  kms.destroy();
  signing.destroy();
  await server.close();
  await rm(dataDir, { recursive: true, force: true });
});

const tagsOf = async (keyArn: string) =>
  (await kms.send(new ListResourceTagsCommand({ KeyId: keyArn }))).Tags ?? [];

it('tags each key it creates with its broker instance id and the service', async () => {
  const keys = new KmsSigningKeys(signing, { brokerId: 'token-broker-prod' });

  const keyArn = await keys.create('graph', 'RSA_3072');

  expect(await tagsOf(keyArn)).toEqual([
    { TagKey: BROKER_INSTANCE_TAG, TagValue: 'token-broker-prod' },
    { TagKey: BROKER_KEY_TAG, TagValue: 'graph' },
  ]);
  const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: keyArn }));
  expect(KeyMetadata).toMatchObject({ KeySpec: 'RSA_3072', KeyUsage: 'SIGN_VERIFY' });
});

it('keeps the keys of two brokers in one account apart by that tag', async () => {
  const prod = new KmsSigningKeys(signing, { brokerId: 'token-broker-prod' });
  const dev = new KmsSigningKeys(signing, { brokerId: 'token-broker-dev' });

  const [prodKey, devKey] = await Promise.all([
    prod.create('graph', 'RSA_2048'),
    dev.create('graph', 'RSA_2048'),
  ]);

  const instanceOf = async (arn: string) =>
    (await tagsOf(arn)).find((t) => t.TagKey === BROKER_INSTANCE_TAG)?.TagValue;
  expect(await instanceOf(prodKey)).toBe('token-broker-prod');
  expect(await instanceOf(devKey)).toBe('token-broker-dev');
});

it('refuses a broker id that KMS would not take as a tag value', () => {
  for (const brokerId of ['', 'a'.repeat(257), 'broker;drop', 'with*wildcard']) {
    expect(() => new KmsSigningKeys(signing, { brokerId })).toThrow(/brokerId must be a KMS tag value/);
  }
});
