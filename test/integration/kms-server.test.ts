import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  AlreadyExistsException,
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  GenerateDataKeyCommand,
  IncorrectKeyException,
  InvalidAliasNameException,
  InvalidCiphertextException,
  KMSClient,
  KMSInternalException,
  NotFoundException,
} from '@aws-sdk/client-kms';
import {
  ensureLocalKey,
  type KmsServerOptions,
  LOCAL_KMS_KEY_ALIAS,
  type RunningKmsServer,
  startKmsServer,
} from '../../local/kms-server';

const CONTEXT = { purpose: 'token-broker:token-cache', service: 'billing', scope: 'api://billing/.default' };

/** The real SDK client, as the broker's adapter builds it, pointed at a local server. */
function clientFor(server: RunningKmsServer): KMSClient {
  return new KMSClient({
    endpoint: server.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    // A retried request would hide the first answer; every answer here is deterministic.
    maxAttempts: 1,
  });
}

describe('local KMS server', () => {
  let dataDir: string;
  const dataDirs: string[] = [];
  const servers: RunningKmsServer[] = [];
  const clients: KMSClient[] = [];

  async function startServer(options: Partial<KmsServerOptions> = {}) {
    const server = await startKmsServer({ dataDir, ...options });
    const client = clientFor(server);
    servers.push(server);
    clients.push(client);
    return { server, client };
  }

  async function newDataDir(): Promise<string> {
    const directory = await mkdtemp(path.join(tmpdir(), 'kms-server-'));
    dataDirs.push(directory);
    return directory;
  }

  async function createKey(client: KMSClient): Promise<{ keyId: string; arn: string }> {
    const { KeyMetadata } = await client.send(new CreateKeyCommand({}));
    return { keyId: KeyMetadata?.KeyId as string, arn: KeyMetadata?.Arn as string };
  }

  beforeEach(async () => {
    dataDir = await newDataDir();
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await Promise.all(servers.splice(0).map((server) => server.close()));
    await Promise.all(dataDirs.splice(0).map((directory) => rm(directory, { recursive: true, force: true })));
  });

  it('creates an enabled symmetric key whose ARN names its region, account and key id', async () => {
    // Prepare
    const { client } = await startServer({ region: 'eu-west-1', accountId: '123456789012' });

    // Act
    const { KeyMetadata } = await client.send(new CreateKeyCommand({ Description: 'token cache' }));

    // Assess
    expect(KeyMetadata?.KeyId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(KeyMetadata).toMatchObject({
      Arn: `arn:aws:kms:eu-west-1:123456789012:key/${KeyMetadata?.KeyId}`,
      AWSAccountId: '123456789012',
      Description: 'token cache',
      Enabled: true,
      KeyState: 'Enabled',
      KeyUsage: 'ENCRYPT_DECRYPT',
      KeySpec: 'SYMMETRIC_DEFAULT',
      EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
    });
    expect(KeyMetadata?.CreationDate).toBeInstanceOf(Date);
  });

  it('decrypts a generated data key, under the same encryption context, to the same plaintext', async () => {
    // Prepare
    const { client } = await startServer();
    const { arn } = await createKey(client);
    const dataKey = await client.send(
      new GenerateDataKeyCommand({ KeyId: arn, KeySpec: 'AES_256', EncryptionContext: CONTEXT }),
    );

    // Act
    const decrypted = await client.send(
      new DecryptCommand({ CiphertextBlob: dataKey.CiphertextBlob, EncryptionContext: { ...CONTEXT } }),
    );

    // Assess
    expect(dataKey.Plaintext).toHaveLength(32);
    expect(dataKey.KeyId).toBe(arn);
    expect(Buffer.from(decrypted.Plaintext as Uint8Array)).toEqual(
      Buffer.from(dataKey.Plaintext as Uint8Array),
    );
    expect(decrypted.KeyId).toBe(arn);
    expect(decrypted.EncryptionAlgorithm).toBe('SYMMETRIC_DEFAULT');
  });

  it('treats the encryption context as unordered', async () => {
    // Prepare
    const { client } = await startServer();
    const { arn } = await createKey(client);
    const dataKey = await client.send(
      new GenerateDataKeyCommand({ KeyId: arn, KeySpec: 'AES_256', EncryptionContext: { a: '1', b: '2' } }),
    );

    // Act
    const decrypted = await client.send(
      new DecryptCommand({ CiphertextBlob: dataKey.CiphertextBlob, EncryptionContext: { b: '2', a: '1' } }),
    );

    // Assess
    expect(Buffer.from(decrypted.Plaintext as Uint8Array)).toEqual(
      Buffer.from(dataKey.Plaintext as Uint8Array),
    );
  });

  it('refuses a member it does not implement with UnsupportedOperationException naming the member', async () => {
    // Prepare
    const { client } = await startServer();
    const { arn } = await createKey(client);

    // Act
    const generation = client.send(new GenerateDataKeyCommand({ KeyId: arn, NumberOfBytes: 64 }));
    const dryRun = client.send(new GenerateDataKeyCommand({ KeyId: arn, KeySpec: 'AES_256', DryRun: true }));

    // Assess
    await expect(generation).rejects.toMatchObject({
      name: 'UnsupportedOperationException',
      message: 'NumberOfBytes is not supported by this local server.',
    });
    await expect(dryRun).rejects.toMatchObject({
      name: 'UnsupportedOperationException',
      message: 'DryRun is not supported by this local server.',
    });
  });

  it('refuses an elliptic-curve key (only RSA signing keys are implemented) with UnsupportedOperationException', async () => {
    // Prepare
    const { client } = await startServer();

    // Act
    const creation = client.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }));

    // Assess
    await expect(creation).rejects.toMatchObject({ name: 'UnsupportedOperationException' });
  });

  it('refuses to decrypt under a different encryption context with InvalidCiphertextException', async () => {
    // Prepare
    const { client } = await startServer();
    const { arn } = await createKey(client);
    const { CiphertextBlob } = await client.send(
      new GenerateDataKeyCommand({ KeyId: arn, KeySpec: 'AES_256', EncryptionContext: CONTEXT }),
    );

    // Act
    const decryption = client.send(
      new DecryptCommand({ CiphertextBlob, EncryptionContext: { ...CONTEXT, service: 'orders' } }),
    );

    // Assess
    await expect(decryption).rejects.toBeInstanceOf(InvalidCiphertextException);
  });

  it('refuses to decrypt without the encryption context it was encrypted under', async () => {
    // Prepare
    const { client } = await startServer();
    const { arn } = await createKey(client);
    const { CiphertextBlob } = await client.send(
      new GenerateDataKeyCommand({ KeyId: arn, KeySpec: 'AES_256', EncryptionContext: CONTEXT }),
    );

    // Act
    const decryption = client.send(new DecryptCommand({ CiphertextBlob }));

    // Assess
    await expect(decryption).rejects.toBeInstanceOf(InvalidCiphertextException);
  });

  it('refuses a tampered ciphertext with InvalidCiphertextException', async () => {
    // Prepare
    const { client } = await startServer();
    const { arn } = await createKey(client);
    const { CiphertextBlob } = await client.send(
      new GenerateDataKeyCommand({ KeyId: arn, KeySpec: 'AES_256', EncryptionContext: CONTEXT }),
    );
    const tampered = Buffer.from(CiphertextBlob as Uint8Array);
    tampered[tampered.length - 20] = (tampered[tampered.length - 20] as number) ^ 0x01;

    // Act
    const decryption = client.send(
      new DecryptCommand({ CiphertextBlob: tampered, EncryptionContext: CONTEXT }),
    );

    // Assess
    await expect(decryption).rejects.toBeInstanceOf(InvalidCiphertextException);
  });

  it('refuses bytes that are not a ciphertext of this server with InvalidCiphertextException', async () => {
    // Prepare
    const { client } = await startServer();

    // Act
    const decryption = client.send(new DecryptCommand({ CiphertextBlob: Buffer.from('not a ciphertext') }));

    // Assess
    await expect(decryption).rejects.toBeInstanceOf(InvalidCiphertextException);
  });

  it('reports an unknown key as NotFoundException', async () => {
    // Prepare
    const { client } = await startServer();

    // Act
    const generation = client.send(new GenerateDataKeyCommand({ KeyId: randomUUID(), KeySpec: 'AES_256' }));

    // Assess
    await expect(generation).rejects.toBeInstanceOf(NotFoundException);
  });

  it('reports an unknown alias as NotFoundException', async () => {
    // Prepare
    const { client } = await startServer();

    // Act
    const description = client.send(new DescribeKeyCommand({ KeyId: 'alias/no-such-alias' }));

    // Assess
    await expect(description).rejects.toBeInstanceOf(NotFoundException);
  });

  it('reports a ciphertext whose key does not exist here as NotFoundException', async () => {
    // Prepare
    const { client: elsewhere } = await startServer({ dataDir: await newDataDir() });
    const { arn } = await createKey(elsewhere);
    const { CiphertextBlob } = await elsewhere.send(
      new GenerateDataKeyCommand({ KeyId: arn, KeySpec: 'AES_256' }),
    );
    const { client } = await startServer();

    // Act
    const decryption = client.send(new DecryptCommand({ CiphertextBlob }));

    // Assess
    await expect(decryption).rejects.toBeInstanceOf(NotFoundException);
  });

  it('resolves a key by its id, its ARN, its alias name and its alias ARN', async () => {
    // Prepare
    const { client } = await startServer();
    const { keyId, arn } = await createKey(client);
    await client.send(new CreateAliasCommand({ AliasName: 'alias/token-cache', TargetKeyId: keyId }));

    // Act
    const identifiers = [
      keyId,
      arn,
      'alias/token-cache',
      'arn:aws:kms:us-east-1:000000000000:alias/token-cache',
    ];
    const described = await Promise.all(
      identifiers.map((identifier) => client.send(new DescribeKeyCommand({ KeyId: identifier }))),
    );

    // Assess
    expect(described.map((out) => out.KeyMetadata?.Arn)).toEqual([arn, arn, arn, arn]);
  });

  it('decrypts, without being told the key, what was encrypted under an alias', async () => {
    // Prepare
    const { client } = await startServer();
    const { keyId, arn } = await createKey(client);
    await client.send(new CreateAliasCommand({ AliasName: LOCAL_KMS_KEY_ALIAS, TargetKeyId: keyId }));
    const dataKey = await client.send(
      new GenerateDataKeyCommand({ KeyId: LOCAL_KMS_KEY_ALIAS, KeySpec: 'AES_256' }),
    );

    // Act
    const decrypted = await client.send(new DecryptCommand({ CiphertextBlob: dataKey.CiphertextBlob }));

    // Assess
    expect(dataKey.KeyId).toBe(arn);
    expect(decrypted.KeyId).toBe(arn);
    expect(Buffer.from(decrypted.Plaintext as Uint8Array)).toEqual(
      Buffer.from(dataKey.Plaintext as Uint8Array),
    );
  });

  it('decrypts when the request names the ciphertext key by its alias', async () => {
    // Prepare
    const { client } = await startServer();
    const { keyId } = await createKey(client);
    await client.send(new CreateAliasCommand({ AliasName: LOCAL_KMS_KEY_ALIAS, TargetKeyId: keyId }));
    const dataKey = await client.send(
      new GenerateDataKeyCommand({
        KeyId: LOCAL_KMS_KEY_ALIAS,
        KeySpec: 'AES_256',
        EncryptionContext: CONTEXT,
      }),
    );

    // Act
    const decrypted = await client.send(
      new DecryptCommand({
        CiphertextBlob: dataKey.CiphertextBlob,
        EncryptionContext: CONTEXT,
        KeyId: LOCAL_KMS_KEY_ALIAS,
      }),
    );

    // Assess
    expect(Buffer.from(decrypted.Plaintext as Uint8Array)).toEqual(
      Buffer.from(dataKey.Plaintext as Uint8Array),
    );
  });

  it('refuses Decrypt naming another key than the one of the ciphertext with IncorrectKeyException', async () => {
    // Prepare
    const { client } = await startServer();
    const first = await createKey(client);
    const second = await createKey(client);
    const { CiphertextBlob } = await client.send(
      new GenerateDataKeyCommand({ KeyId: first.arn, KeySpec: 'AES_256' }),
    );

    // Act
    const decryption = client.send(new DecryptCommand({ CiphertextBlob, KeyId: second.arn }));

    // Assess
    await expect(decryption).rejects.toBeInstanceOf(IncorrectKeyException);
  });

  it('refuses a second alias of the same name with AlreadyExistsException', async () => {
    // Prepare
    const { client } = await startServer();
    const first = await createKey(client);
    const second = await createKey(client);
    await client.send(new CreateAliasCommand({ AliasName: 'alias/token-cache', TargetKeyId: first.keyId }));

    // Act
    const creation = client.send(
      new CreateAliasCommand({ AliasName: 'alias/token-cache', TargetKeyId: second.keyId }),
    );

    // Assess
    await expect(creation).rejects.toBeInstanceOf(AlreadyExistsException);
    const described = await client.send(new DescribeKeyCommand({ KeyId: 'alias/token-cache' }));
    expect(described.KeyMetadata?.Arn).toBe(first.arn);
  });

  it('refuses an alias name without the alias/ prefix with InvalidAliasNameException', async () => {
    // Prepare
    const { client } = await startServer();
    const { keyId } = await createKey(client);

    // Act
    const creation = client.send(new CreateAliasCommand({ AliasName: 'token-cache', TargetKeyId: keyId }));

    // Assess
    await expect(creation).rejects.toBeInstanceOf(InvalidAliasNameException);
  });

  it('decrypts on a second server over the same dataDir what the first encrypted', async () => {
    // Prepare
    const { client: first } = await startServer();
    const { client: second } = await startServer();
    const { arn } = await createKey(first);
    const dataKey = await first.send(
      new GenerateDataKeyCommand({ KeyId: arn, KeySpec: 'AES_256', EncryptionContext: CONTEXT }),
    );

    // Act
    const decrypted = await second.send(
      new DecryptCommand({ CiphertextBlob: dataKey.CiphertextBlob, EncryptionContext: CONTEXT }),
    );

    // Assess
    expect(Buffer.from(decrypted.Plaintext as Uint8Array)).toEqual(
      Buffer.from(dataKey.Plaintext as Uint8Array),
    );
  });

  it('returns the same key ARN from every ensureLocalKey call', async () => {
    // Prepare
    const { client } = await startServer();
    const first = await ensureLocalKey(client, LOCAL_KMS_KEY_ALIAS);

    // Act
    const second = await ensureLocalKey(client, LOCAL_KMS_KEY_ALIAS);

    // Assess
    expect(second).toBe(first);
    const described = await client.send(new DescribeKeyCommand({ KeyId: LOCAL_KMS_KEY_ALIAS }));
    expect(described.KeyMetadata?.Arn).toBe(first);
  });

  it('gives concurrent ensureLocalKey calls on two servers over one dataDir the same key', async () => {
    // Prepare
    const { client: first } = await startServer();
    const { client: second } = await startServer();

    // Act
    const arns = await Promise.all([
      ensureLocalKey(first, LOCAL_KMS_KEY_ALIAS),
      ensureLocalKey(second, LOCAL_KMS_KEY_ALIAS),
      ensureLocalKey(first, LOCAL_KMS_KEY_ALIAS),
      ensureLocalKey(second, LOCAL_KMS_KEY_ALIAS),
    ]);

    // Assess
    expect(new Set(arns).size).toBe(1);
  });

  it('stores keys and aliases in files of mode 0600 inside a directory of mode 0700', async () => {
    // Prepare
    const { client } = await startServer();

    // Act
    await ensureLocalKey(client, LOCAL_KMS_KEY_ALIAS);

    // Assess
    const kmsDir = path.join(dataDir, 'kms');
    const files = await readdir(kmsDir);
    expect(files).toHaveLength(2);
    for (const file of files) expect((await stat(path.join(kmsDir, file))).mode & 0o777).toBe(0o600);
    expect((await stat(kmsDir)).mode & 0o777).toBe(0o700);
  });

  it('answers a corrupt key file with KMSInternalException and logs nothing of its contents', async () => {
    // Prepare
    const { client } = await startServer();
    const { keyId } = await createKey(client);
    await writeFile(path.join(dataDir, 'kms', `key-${keyId}.json`), '{"keyMaterial":"do-not-log-this');
    const logged = jest.spyOn(console, 'error').mockImplementation(() => {});

    // Act
    const generation = client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));

    // Assess
    await expect(generation).rejects.toBeInstanceOf(KMSInternalException);
    expect(logged).toHaveBeenCalledTimes(1);
    expect(JSON.stringify(logged.mock.calls)).not.toContain('do-not-log-this');
    logged.mockRestore();
  });

  it('is reached through AWS_ENDPOINT_URL_KMS, as local mode configures the client', async () => {
    // Prepare
    const { server } = await startServer();
    const previous = process.env.AWS_ENDPOINT_URL_KMS;
    process.env.AWS_ENDPOINT_URL_KMS = server.url;
    const client = new KMSClient({
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      maxAttempts: 1,
    });
    clients.push(client);

    // Act
    const arn = await ensureLocalKey(client, LOCAL_KMS_KEY_ALIAS).finally(() => {
      if (previous === undefined) delete process.env.AWS_ENDPOINT_URL_KMS;
      else process.env.AWS_ENDPOINT_URL_KMS = previous;
    });

    // Assess
    expect(arn).toMatch(/^arn:aws:kms:us-east-1:000000000000:key\//);
  });

  it('answers an unknown operation with UnknownOperationException', async () => {
    // Prepare
    const { server } = await startServer();

    // Act
    const response = await fetch(server.url, {
      method: 'POST',
      headers: {
        'X-Amz-Target': 'TrentService.NoSuchOperation',
        'Content-Type': 'application/x-amz-json-1.1',
      },
      body: '{}',
    });

    // Assess
    expect(response.status).toBe(400);
    expect(response.headers.get('x-amzn-errortype')).toBe('UnknownOperationException');
    expect(await response.json()).toMatchObject({ __type: 'UnknownOperationException' });
  });

  it('answers malformed JSON with SerializationException that does not quote the body', async () => {
    // Prepare
    const { server } = await startServer();

    // Act
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'X-Amz-Target': 'TrentService.Decrypt', 'Content-Type': 'application/x-amz-json-1.1' },
      body: '{"KeyId":"alias/token-broker-local","CiphertextBlob":"ZG8tbm90LWVjaG8tdGhpcw=="',
    });

    // Assess
    const body = await response.text();
    expect(response.status).toBe(400);
    expect(JSON.parse(body)).toMatchObject({ __type: 'SerializationException' });
    expect(body).not.toContain('ZG8tbm90LWVjaG8tdGhpcw');
  });
});
