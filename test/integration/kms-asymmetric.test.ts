/**
 * The local KMS's asymmetric signing keys, through the real @aws-sdk/client-kms client over real sockets: what
 * the `kms_certificate` credential relies on (CreateKey with tags, GetPublicKey, Sign/Verify in PSS and PKCS#1
 * v1.5, ScheduleKeyDeletion), and that symmetric keys keep working beside them.
 */
import { constants, createPublicKey, verify } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CreateKeyCommand,
  DescribeKeyCommand,
  GenerateDataKeyCommand,
  GetPublicKeyCommand,
  KMSClient,
  KMSInvalidSignatureException,
  KMSInvalidStateException,
  ListResourceTagsCommand,
  ScheduleKeyDeletionCommand,
  SignCommand,
  VerifyCommand,
} from '@aws-sdk/client-kms';
import { type RunningKmsServer, startKmsServer } from '../../local/kms-server';

let dataDir: string;
let server: RunningKmsServer;
let kms: KMSClient;
const message = new TextEncoder().encode('header.claims');

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kms-asymmetric-'));
  server = await startKmsServer({ dataDir });
  kms = new KMSClient({
    endpoint: server.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
});

afterAll(async () => {
  kms.destroy();
  await server.close();
  await rm(dataDir, { recursive: true, force: true });
});

async function createSigningKey(spec: 'RSA_2048' | 'RSA_3072' = 'RSA_2048'): Promise<string> {
  const { KeyMetadata } = await kms.send(
    new CreateKeyCommand({
      KeySpec: spec,
      KeyUsage: 'SIGN_VERIFY',
      Tags: [{ TagKey: 'token-broker:service', TagValue: 'graph' }],
    }),
  );
  return KeyMetadata?.Arn as string;
}

it('creates an RSA_2048 SIGN_VERIFY key with its tags and describes it as such', async () => {
  const arn = await createSigningKey();
  const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: arn }));
  const { Tags } = await kms.send(new ListResourceTagsCommand({ KeyId: arn }));
  expect(KeyMetadata).toMatchObject({ KeyUsage: 'SIGN_VERIFY', KeySpec: 'RSA_2048', KeyState: 'Enabled' });
  expect(Tags).toEqual([{ TagKey: 'token-broker:service', TagValue: 'graph' }]);
});

it('creates RSA_3072 keys whose public key is 3072 bits', async () => {
  const arn = await createSigningKey('RSA_3072');
  const { PublicKey } = await kms.send(new GetPublicKeyCommand({ KeyId: arn }));
  const key = createPublicKey({ key: Buffer.from(PublicKey as Uint8Array), format: 'der', type: 'spki' });
  expect(key.asymmetricKeyDetails?.modulusLength).toBe(3072);
});

it('signs with RSASSA_PSS_SHA_256 so the public key verifies it (salt as long as the digest)', async () => {
  const arn = await createSigningKey();
  const { Signature } = await kms.send(
    new SignCommand({
      KeyId: arn,
      Message: message,
      MessageType: 'RAW',
      SigningAlgorithm: 'RSASSA_PSS_SHA_256',
    }),
  );
  const { PublicKey } = await kms.send(new GetPublicKeyCommand({ KeyId: arn }));
  const publicKey = createPublicKey({
    key: Buffer.from(PublicKey as Uint8Array),
    format: 'der',
    type: 'spki',
  });
  const valid = verify(
    'sha256',
    message,
    { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
    Signature as Uint8Array,
  );
  expect(valid).toBe(true);
});

it('verifies its own RSASSA_PKCS1_V1_5_SHA_256 signatures and refuses a changed message', async () => {
  const arn = await createSigningKey();
  const { Signature } = await kms.send(
    new SignCommand({ KeyId: arn, Message: message, SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256' }),
  );
  const ok = await kms.send(
    new VerifyCommand({
      KeyId: arn,
      Message: message,
      Signature,
      SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256',
    }),
  );
  expect(ok.SignatureValid).toBe(true);
  await expect(
    kms.send(
      new VerifyCommand({
        KeyId: arn,
        Message: new TextEncoder().encode('other'),
        Signature,
        SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256',
      }),
    ),
  ).rejects.toBeInstanceOf(KMSInvalidSignatureException);
});

it('refuses to sign with a key scheduled for deletion', async () => {
  const arn = await createSigningKey();
  const scheduled = await kms.send(new ScheduleKeyDeletionCommand({ KeyId: arn, PendingWindowInDays: 7 }));
  expect(scheduled.KeyState).toBe('PendingDeletion');
  await expect(
    kms.send(new SignCommand({ KeyId: arn, Message: message, SigningAlgorithm: 'RSASSA_PSS_SHA_256' })),
  ).rejects.toBeInstanceOf(KMSInvalidStateException);
  const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: arn }));
  expect(KeyMetadata?.KeyState).toBe('PendingDeletion');
});

it('refuses a pending window outside 7 to 30 days', async () => {
  const arn = await createSigningKey();
  await expect(
    kms.send(new ScheduleKeyDeletionCommand({ KeyId: arn, PendingWindowInDays: 3 })),
  ).rejects.toMatchObject({ name: 'ValidationException' });
});

it('refuses a member it does not implement, naming it', async () => {
  const arn = await createSigningKey();
  await expect(
    kms.send(
      new SignCommand({ KeyId: arn, Message: message, SigningAlgorithm: 'RSASSA_PSS_SHA_256', DryRun: true }),
    ),
  ).rejects.toMatchObject({
    name: 'UnsupportedOperationException',
    message: 'DryRun is not supported by this local server.',
  });
});

it('refuses a key spec it does not implement', async () => {
  await expect(
    kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' })),
  ).rejects.toMatchObject({ name: 'UnsupportedOperationException' });
});

it('keeps serving symmetric keys beside the asymmetric ones', async () => {
  const { KeyMetadata } = await kms.send(new CreateKeyCommand({}));
  const { CiphertextBlob } = await kms.send(
    new GenerateDataKeyCommand({ KeyId: KeyMetadata?.KeyId, KeySpec: 'AES_256' }),
  );
  expect(CiphertextBlob?.length).toBeGreaterThan(32);
  await expect(
    kms.send(
      new SignCommand({
        KeyId: KeyMetadata?.KeyId,
        Message: message,
        SigningAlgorithm: 'RSASSA_PSS_SHA_256',
      }),
    ),
  ).rejects.toMatchObject({ name: 'InvalidKeyUsageException' });
});
