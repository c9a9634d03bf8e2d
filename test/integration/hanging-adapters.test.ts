import { AWS_CALL_LIMITS } from '../../functions/aws-clients';
import { StoreError, StoreTimeoutError } from '../../lib/errors';
import { SecretsManagerSecretStore } from '../../lib/secret-store';
import { DynamoDbServiceRegistry } from '../../lib/service-registry';
import { DynamoDbTokenCache } from '../../lib/token-cache';
import { KmsEnvelopeEncryption } from '../../lib/token-encryption';
import { BlackHole } from '../fixtures/black-hole';
import { brokerDynamoDb, brokerKms, brokerSecretsManager } from '../fixtures/broker-aws';
import { rejectionOf } from '../fixtures/rejection';

/**
 * Every AWS call has a bounded time (issue 9 §1). Each adapter runs on the clients the handlers use
 * (functions/aws-clients.ts, functions/aws-json.ts) against a black hole: a real socket that accepts the connection
 * and never answers. Without the client's own timeouts these calls never end.
 */

const SERVICE = { service: 'hang', version: 'v1', scope: 'https://graph.microsoft.com/.default' };

let hole: BlackHole;
beforeEach(async () => {
  hole = await BlackHole.start();
});
afterEach(async () => {
  await hole.close();
});

describe('DynamoDB that accepts connections and never answers', () => {
  it('fails a service read with a StoreTimeoutError (a StoreError, so the flow degrades to memory)', async () => {
    const client = brokerDynamoDb(hole.url);
    const registry = new DynamoDbServiceRegistry({ client, tableName: 'services' });
    const error = await rejectionOf(registry.get('hang'));
    client.destroy();
    expect(error).toBeInstanceOf(StoreTimeoutError);
    expect(error).toBeInstanceOf(StoreError);
  });

  it('fails a token cache read with a StoreTimeoutError', async () => {
    const client = brokerDynamoDb(hole.url);
    const cache = new DynamoDbTokenCache({ client, tableName: 'tokens' });
    const error = await rejectionOf(cache.lookup('hang'));
    client.destroy();
    expect(error).toBeInstanceOf(StoreTimeoutError);
  });

  it('tries each call at most maxAttempts times', async () => {
    const client = brokerDynamoDb(hole.url);
    const registry = new DynamoDbServiceRegistry({ client, tableName: 'services' });
    await rejectionOf(registry.get('hang'));
    client.destroy();
    expect(hole.connections).toBe(AWS_CALL_LIMITS.dynamodb.maxAttempts);
  });

  it('stops at once, without a retry, when the request’s budget signal aborts the call', async () => {
    // Prepare: the budget runs out as soon as the black hole has the request
    const client = brokerDynamoDb(hole.url);
    const registry = new DynamoDbServiceRegistry({ client, tableName: 'services' });
    const budget = new AbortController();
    void hole.nextSwallowed().then(() => budget.abort());
    // Act
    const error = await rejectionOf(registry.get('hang', { signal: budget.signal }));
    client.destroy();
    // Assess
    expect(error).toBeInstanceOf(StoreTimeoutError);
    expect(hole.connections).toBe(1);
  });

  it('makes no call at all once the budget is spent', async () => {
    const client = brokerDynamoDb(hole.url);
    const registry = new DynamoDbServiceRegistry({ client, tableName: 'services' });
    const error = await rejectionOf(registry.get('hang', { signal: AbortSignal.abort() }));
    client.destroy();
    expect(error).toBeInstanceOf(StoreTimeoutError);
    expect(hole.connections).toBe(0);
  });
});

describe('Secrets Manager that accepts connections and never answers', () => {
  it('fails a secret read with a StoreTimeoutError', async () => {
    const client = brokerSecretsManager(hole.url);
    const secrets = new SecretsManagerSecretStore({ client });
    const error = await rejectionOf(
      secrets.read('arn:aws:secretsmanager:us-east-1:000000000000:secret:hang-AbCdEf'),
    );
    client.destroy();
    expect(error).toBeInstanceOf(StoreTimeoutError);
  });

  it('fails a secret check (DescribeSecret) with a StoreTimeoutError', async () => {
    const client = brokerSecretsManager(hole.url);
    const secrets = new SecretsManagerSecretStore({ client });
    const error = await rejectionOf(
      secrets.describe('arn:aws:secretsmanager:us-east-1:000000000000:secret:hang-AbCdEf'),
    );
    client.destroy();
    expect(error).toBeInstanceOf(StoreTimeoutError);
  });
});

describe('KMS that accepts connections and never answers', () => {
  it('fails sealing a token (GenerateDataKey) with a StoreTimeoutError', async () => {
    const client = brokerKms(hole.url);
    const sealer = new KmsEnvelopeEncryption({ client, keyId: 'alias/hang' });
    const error = await rejectionOf(sealer.seal('token', SERVICE));
    client.destroy();
    expect(error).toBeInstanceOf(StoreTimeoutError);
  });

  it('fails opening a token (Decrypt) with a StoreTimeoutError', async () => {
    const client = brokerKms(hole.url);
    const sealer = new KmsEnvelopeEncryption({ client, keyId: 'alias/hang' });
    const sealed = { ciphertext: Buffer.alloc(64).toString('base64'), encryptedKey: 'AAAA' };
    const error = await rejectionOf(sealer.open(sealed, SERVICE));
    client.destroy();
    expect(error).toBeInstanceOf(StoreTimeoutError);
  });
});
