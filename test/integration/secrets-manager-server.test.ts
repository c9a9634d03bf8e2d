import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  InvalidParameterException,
  InvalidRequestException,
  ListSecretsCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  RestoreSecretCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import {
  type RunningSecretsManagerServer,
  type SecretsManagerServerOptions,
  startSecretsManagerServer,
} from '../../local/secrets-manager-server';

const DAY_MS = 86_400_000;

/** The real SDK client, as the broker's adapter builds it, pointed at a local server. */
function clientFor(server: RunningSecretsManagerServer): SecretsManagerClient {
  return new SecretsManagerClient({
    endpoint: server.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    // A retried request would hide the first answer; every answer here is deterministic.
    maxAttempts: 1,
  });
}

describe('local Secrets Manager server', () => {
  let dataDir: string;
  const servers: RunningSecretsManagerServer[] = [];
  const clients: SecretsManagerClient[] = [];

  async function startServer(options: Partial<SecretsManagerServerOptions> = {}) {
    const server = await startSecretsManagerServer({ dataDir, ...options });
    const client = clientFor(server);
    servers.push(server);
    clients.push(client);
    return { server, client };
  }

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'secrets-manager-server-'));
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await Promise.all(servers.splice(0).map((server) => server.close()));
    await rm(dataDir, { recursive: true, force: true });
  });

  it('returns the value a secret was created with', async () => {
    // Prepare
    const { client } = await startServer();
    const created = await client.send(
      new CreateSecretCommand({ Name: 'token-broker/services/billing', SecretString: 'first-value' }),
    );

    // Act
    const read = await client.send(new GetSecretValueCommand({ SecretId: 'token-broker/services/billing' }));

    // Assess
    expect(created.ARN).toMatch(
      /^arn:aws:secretsmanager:us-east-1:000000000000:secret:token-broker\/services\/billing-[A-Za-z0-9]{6}$/,
    );
    expect(read).toMatchObject({
      ARN: created.ARN,
      Name: 'token-broker/services/billing',
      VersionId: created.VersionId,
      SecretString: 'first-value',
      VersionStages: ['AWSCURRENT'],
    });
    expect(read.CreatedDate).toBeInstanceOf(Date);
  });

  it('refuses to create a secret whose name is taken with ResourceExistsException', async () => {
    // Prepare
    const { client } = await startServer();
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'first-value' }));

    // Act
    const second = client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'other-value' }));

    // Assess
    await expect(second).rejects.toBeInstanceOf(ResourceExistsException);
  });

  it('reads a secret by its full ARN', async () => {
    // Prepare
    const { client } = await startServer();
    const { ARN } = await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'by-arn' }));

    // Act
    const read = await client.send(new GetSecretValueCommand({ SecretId: ARN }));

    // Assess
    expect(read.SecretString).toBe('by-arn');
  });

  it('reads a secret by its partial ARN (without the random suffix)', async () => {
    // Prepare
    const { client } = await startServer();
    const { ARN } = await client.send(
      new CreateSecretCommand({ Name: 'billing', SecretString: 'by-partial-arn' }),
    );

    // Act
    const read = await client.send(new GetSecretValueCommand({ SecretId: ARN?.slice(0, -7) }));

    // Assess
    expect(read.SecretString).toBe('by-partial-arn');
  });

  it('does not resolve the ARN of an earlier secret of the same name', async () => {
    // Prepare
    const { client } = await startServer();
    const { ARN: oldArn } = await client.send(
      new CreateSecretCommand({ Name: 'billing', SecretString: 'old' }),
    );
    await client.send(new DeleteSecretCommand({ SecretId: 'billing', ForceDeleteWithoutRecovery: true }));
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'new' }));

    // Act
    const read = client.send(new GetSecretValueCommand({ SecretId: oldArn }));

    // Assess
    await expect(read).rejects.toBeInstanceOf(ResourceNotFoundException);
  });

  it('makes a put value AWSCURRENT and the value it replaces AWSPREVIOUS', async () => {
    // Prepare
    const { client } = await startServer();
    const created = await client.send(
      new CreateSecretCommand({ Name: 'billing', SecretString: 'first-value' }),
    );

    // Act
    const put = await client.send(
      new PutSecretValueCommand({ SecretId: created.ARN, SecretString: 'second-value' }),
    );

    // Assess
    const current = await client.send(new GetSecretValueCommand({ SecretId: 'billing' }));
    const described = await client.send(new DescribeSecretCommand({ SecretId: 'billing' }));
    expect(put.VersionStages).toEqual(['AWSCURRENT']);
    expect(current).toMatchObject({ SecretString: 'second-value', VersionId: put.VersionId });
    expect(described.VersionIdsToStages).toEqual({
      [created.VersionId as string]: ['AWSPREVIOUS'],
      [put.VersionId as string]: ['AWSCURRENT'],
    });
  });

  it('treats a retried PutSecretValue with the same ClientRequestToken as one version', async () => {
    // Prepare
    const { client } = await startServer();
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'first-value' }));
    const token = '11111111-2222-4333-8444-555555555555';
    await client.send(
      new PutSecretValueCommand({
        SecretId: 'billing',
        SecretString: 'second-value',
        ClientRequestToken: token,
      }),
    );

    // Act
    await client.send(
      new PutSecretValueCommand({
        SecretId: 'billing',
        SecretString: 'second-value',
        ClientRequestToken: token,
      }),
    );

    // Assess
    const described = await client.send(new DescribeSecretCommand({ SecretId: 'billing' }));
    const current = await client.send(new GetSecretValueCommand({ SecretId: 'billing' }));
    expect(Object.values(described.VersionIdsToStages ?? {})).toHaveLength(2);
    expect(current).toMatchObject({ SecretString: 'second-value', VersionId: token });
  });

  it('refuses to read a secret scheduled for deletion with InvalidRequestException', async () => {
    // Prepare
    const { client } = await startServer();
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'value' }));
    await client.send(new DeleteSecretCommand({ SecretId: 'billing', RecoveryWindowInDays: 7 }));

    // Act
    const read = client.send(new GetSecretValueCommand({ SecretId: 'billing' }));

    // Assess
    await expect(read).rejects.toBeInstanceOf(InvalidRequestException);
    await expect(read).rejects.toThrow(
      "You can't perform this operation on the secret because it was marked for deletion.",
    );
  });

  it('refuses to re-create a name scheduled for deletion, with InvalidRequestException as AWS does', async () => {
    // Prepare
    const { client } = await startServer();
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'value' }));
    await client.send(new DeleteSecretCommand({ SecretId: 'billing', RecoveryWindowInDays: 7 }));

    // Act
    const recreate = client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'new-value' }));

    // Assess
    await expect(recreate).rejects.toBeInstanceOf(InvalidRequestException);
    await expect(recreate).rejects.toThrow(
      "You can't create this secret because a secret with this name is already scheduled for deletion.",
    );
  });

  it('reports DeletedDate and the end of the recovery window for a deleted secret', async () => {
    // Prepare
    const clock = Date.UTC(2030, 0, 1);
    const { client } = await startServer({ now: () => clock });
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'value' }));

    // Act
    const deleted = await client.send(
      new DeleteSecretCommand({ SecretId: 'billing', RecoveryWindowInDays: 7 }),
    );

    // Assess
    const described = await client.send(new DescribeSecretCommand({ SecretId: 'billing' }));
    expect(deleted.DeletionDate).toEqual(new Date(clock + 7 * DAY_MS));
    expect(described.DeletedDate).toEqual(new Date(clock));
  });

  it('frees the name at once on ForceDeleteWithoutRecovery', async () => {
    // Prepare
    const { client } = await startServer();
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'old-value' }));
    await client.send(new DeleteSecretCommand({ SecretId: 'billing', ForceDeleteWithoutRecovery: true }));

    // Act
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'new-value' }));

    // Assess
    const read = await client.send(new GetSecretValueCommand({ SecretId: 'billing' }));
    expect(read.SecretString).toBe('new-value');
  });

  it('purges a secret, freeing its name, once its recovery window has passed', async () => {
    // Prepare
    let clock = Date.UTC(2030, 0, 1);
    const { client } = await startServer({ now: () => clock });
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'old-value' }));
    await client.send(new DeleteSecretCommand({ SecretId: 'billing', RecoveryWindowInDays: 7 }));

    // Act
    clock += 7 * DAY_MS;

    // Assess
    await expect(client.send(new DescribeSecretCommand({ SecretId: 'billing' }))).rejects.toBeInstanceOf(
      ResourceNotFoundException,
    );
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'new-value' }));
    const read = await client.send(new GetSecretValueCommand({ SecretId: 'billing' }));
    expect(read.SecretString).toBe('new-value');
  });

  it('refuses RecoveryWindowInDays together with ForceDeleteWithoutRecovery with InvalidParameterException', async () => {
    // Prepare
    const { client } = await startServer();
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'value' }));

    // Act
    const deletion = client.send(
      new DeleteSecretCommand({
        SecretId: 'billing',
        RecoveryWindowInDays: 7,
        ForceDeleteWithoutRecovery: true,
      }),
    );

    // Assess
    await expect(deletion).rejects.toBeInstanceOf(InvalidParameterException);
  });

  it('refuses a recovery window shorter than 7 days with InvalidParameterException', async () => {
    // Prepare
    const { client } = await startServer();
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'value' }));

    // Act
    const deletion = client.send(new DeleteSecretCommand({ SecretId: 'billing', RecoveryWindowInDays: 6 }));

    // Assess
    await expect(deletion).rejects.toBeInstanceOf(InvalidParameterException);
  });

  it('makes a restored secret readable again', async () => {
    // Prepare
    const { client } = await startServer();
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'kept-value' }));
    await client.send(new DeleteSecretCommand({ SecretId: 'billing', RecoveryWindowInDays: 7 }));

    // Act
    await client.send(new RestoreSecretCommand({ SecretId: 'billing' }));

    // Assess
    const read = await client.send(new GetSecretValueCommand({ SecretId: 'billing' }));
    const described = await client.send(new DescribeSecretCommand({ SecretId: 'billing' }));
    expect(read.SecretString).toBe('kept-value');
    expect(described.DeletedDate).toBeUndefined();
  });

  it('shares secrets between servers over the same dataDir', async () => {
    // Prepare
    const { client: first } = await startServer();
    const { client: second } = await startServer();
    await first.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'shared-value' }));

    // Act
    const read = await second.send(new GetSecretValueCommand({ SecretId: 'billing' }));

    // Assess
    expect(read.SecretString).toBe('shared-value');
  });

  it('lets exactly one of two concurrent creates of one name, on two servers, succeed', async () => {
    // Prepare
    const { client: first } = await startServer();
    const { client: second } = await startServer();

    // Act
    const outcomes = await Promise.allSettled([
      first.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'from-first' })),
      second.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'from-second' })),
    ]);

    // Assess
    const rejected = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(1);
    expect(rejected).toHaveLength(1);
    expect((rejected[0] as PromiseRejectedResult).reason).toBeInstanceOf(ResourceExistsException);
  });

  it('stores each secret in a file of mode 0600 inside a directory of mode 0700', async () => {
    // Prepare
    const { client } = await startServer();

    // Act
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'value' }));

    // Assess
    const secretsDir = path.join(dataDir, 'secrets');
    const files = await readdir(secretsDir);
    expect(files).toHaveLength(1);
    expect((await stat(path.join(secretsDir, files[0] as string))).mode & 0o777).toBe(0o600);
    expect((await stat(secretsDir)).mode & 0o777).toBe(0o700);
  });

  it('reports an unknown secret as ResourceNotFoundException', async () => {
    // Prepare
    const { client } = await startServer();

    // Act
    const read = client.send(new GetSecretValueCommand({ SecretId: 'no-such-secret' }));

    // Assess
    await expect(read).rejects.toBeInstanceOf(ResourceNotFoundException);
  });

  it('refuses a name with characters AWS does not allow', async () => {
    // Prepare
    const { client } = await startServer();

    // Act
    const creation = client.send(new CreateSecretCommand({ Name: 'billing secret!', SecretString: 'value' }));

    // Assess
    await expect(creation).rejects.toMatchObject({ name: 'ValidationException' });
  });

  it('lists the secrets in order of creation, page by page, without those scheduled for deletion', async () => {
    // Prepare
    let now = Date.UTC(2026, 0, 1);
    const { client } = await startServer({ now: () => now });
    for (const name of ['services/billing', 'services/retired', 'services/orders', 'other/billing']) {
      await client.send(new CreateSecretCommand({ Name: name, SecretString: 'value' }));
      now += 1000;
    }
    await client.send(new DeleteSecretCommand({ SecretId: 'services/retired' }));

    // Act
    const first = await client.send(new ListSecretsCommand({ MaxResults: 2 }));
    const second = await client.send(new ListSecretsCommand({ MaxResults: 2, NextToken: first.NextToken }));

    // Assess
    expect(first.SecretList?.map((secret) => secret.Name)).toEqual(['services/billing', 'services/orders']);
    expect(second.SecretList?.map((secret) => secret.Name)).toEqual(['other/billing']);
    expect(second.NextToken).toBeUndefined();
  });

  it('lists secrets scheduled for deletion when IncludePlannedDeletion is set', async () => {
    // Prepare
    const { client } = await startServer();
    await client.send(new CreateSecretCommand({ Name: 'services/retired', SecretString: 'value' }));
    await client.send(new DeleteSecretCommand({ SecretId: 'services/retired' }));

    // Act
    const listed = await client.send(new ListSecretsCommand({ IncludePlannedDeletion: true }));

    // Assess
    expect(listed.SecretList).toHaveLength(1);
    expect(listed.SecretList?.[0]?.DeletedDate).toBeInstanceOf(Date);
  });

  it('describes a secret with the tags, KMS key and description it was created with', async () => {
    // Prepare
    const { client } = await startServer();
    await client.send(
      new CreateSecretCommand({
        Name: 'billing',
        SecretString: 'value',
        Description: 'Entra client credential',
        KmsKeyId: 'alias/token-broker',
        Tags: [
          { Key: 'token-broker:service', Value: 'billing' },
          { Key: 'owner', Value: 'platform' },
        ],
      }),
    );

    // Act
    const described = await client.send(new DescribeSecretCommand({ SecretId: 'billing' }));

    // Assess
    expect(described).toMatchObject({
      Description: 'Entra client credential',
      KmsKeyId: 'alias/token-broker',
      Tags: [
        { Key: 'token-broker:service', Value: 'billing' },
        { Key: 'owner', Value: 'platform' },
      ],
    });
  });

  it('refuses a member it does not implement, naming the member and never a value', async () => {
    // Prepare
    const { client } = await startServer();
    await client.send(new CreateSecretCommand({ Name: 'billing', SecretString: 'value' }));

    // Act
    const read = client.send(new GetSecretValueCommand({ SecretId: 'billing', VersionStage: 'AWSPREVIOUS' }));
    const binary = client.send(
      new CreateSecretCommand({ Name: 'orders', SecretBinary: Buffer.from('binary-secret-value') }),
    );

    // Assess
    await expect(read).rejects.toMatchObject({
      name: 'InvalidRequestException',
      message: 'VersionStage is not supported by this local server.',
    });
    await expect(binary).rejects.toMatchObject({
      name: 'InvalidRequestException',
      message: 'SecretBinary is not supported by this local server.',
    });
  });

  it('answers an unknown operation with UnknownOperationException', async () => {
    // Prepare
    const { server } = await startServer();

    // Act
    const response = await fetch(server.url, {
      method: 'POST',
      headers: {
        'X-Amz-Target': 'secretsmanager.NoSuchOperation',
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
      headers: {
        'X-Amz-Target': 'secretsmanager.CreateSecret',
        'Content-Type': 'application/x-amz-json-1.1',
      },
      body: '{"Name":"billing","SecretString":"do-not-echo-this-value"',
    });

    // Assess
    const body = await response.text();
    expect(response.status).toBe(400);
    expect(JSON.parse(body)).toMatchObject({ __type: 'SerializationException' });
    expect(body).not.toContain('do-not-echo-this-value');
  });
});
