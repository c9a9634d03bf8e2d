import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { StoreError } from '../../lib/errors';
import { type KmsDataKeys, KmsEnvelopeEncryption } from '../../lib/token-encryption';
import { ensureLocalKey, LOCAL_KMS_KEY_ALIAS, startKmsServer } from '../../local/kms-server';
import { aroundCalls, brokerKms, LOCAL_CREDENTIALS } from '../fixtures/broker-aws';
import { BrokerHarness } from '../fixtures/broker-harness';
import { dynamoDbLocalClient } from '../fixtures/dynamodb';

/** The broker's KMS client for the local server, counting the operations it sends (observation only, not a mock). */
function countingClient(url: string): { client: KmsDataKeys; calls: string[] } {
  const calls: string[] = [];
  const client = aroundCalls(brokerKms(url), (command, _input, call) => {
    calls.push(command);
    return call();
  });
  return { client, calls };
}

describe('KmsEnvelopeEncryption against a KMS endpoint', () => {
  let dir: string;
  let kms: { url: string; close(): Promise<void> };
  let keyArn: string;
  const context = { service: 'graph', version: 'v1', scope: 'https://graph.microsoft.com/.default' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sealing-'));
    kms = await startKmsServer({ dataDir: dir });
    const setup = new KMSClient({ endpoint: kms.url, region: 'us-east-1', credentials: LOCAL_CREDENTIALS });
    keyArn = await ensureLocalKey(setup, LOCAL_KMS_KEY_ALIAS);
    setup.destroy();
  });
  afterAll(async () => {
    await kms.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens what it sealed, and the ciphertext does not contain the token', async () => {
    const sealer = new KmsEnvelopeEncryption({ client: countingClient(kms.url).client, keyId: keyArn });
    const sealed = await sealer.seal('eyJ.secret-token.sig', context);
    expect(Buffer.from(sealed.ciphertext, 'base64').toString('utf8')).not.toContain('secret-token');
    await expect(sealer.open(sealed, context)).resolves.toBe('eyJ.secret-token.sig');
  });

  it('refuses to open a token under another service, version or scope (encryption context binding)', async () => {
    const sealer = new KmsEnvelopeEncryption({ client: countingClient(kms.url).client, keyId: keyArn });
    const sealed = await sealer.seal('token-for-graph', context);
    await expect(sealer.open(sealed, { ...context, service: 'other' })).rejects.toBeInstanceOf(StoreError);
    await expect(sealer.open(sealed, { ...context, version: 'v2' })).rejects.toBeInstanceOf(StoreError);
    // A fresh container has no cached data key: KMS itself refuses the other context.
    const fresh = new KmsEnvelopeEncryption({ client: countingClient(kms.url).client, keyId: keyArn });
    await expect(
      fresh.open(sealed, { ...context, scope: 'https://vault.azure.net/.default' }),
    ).rejects.toBeInstanceOf(StoreError);
  });

  it('refuses a tampered ciphertext', async () => {
    const sealer = new KmsEnvelopeEncryption({ client: countingClient(kms.url).client, keyId: keyArn });
    const sealed = await sealer.seal('token', context);
    const raw = Buffer.from(sealed.ciphertext, 'base64');
    raw[raw.length - 1] = (raw[raw.length - 1] as number) ^ 1;
    await expect(
      sealer.open({ ...sealed, ciphertext: raw.toString('base64') }, context),
    ).rejects.toBeInstanceOf(StoreError);
  });

  it('reuses one data key per context for many seals and opens, and asks KMS again after maxKeyAgeMs', async () => {
    const { client, calls } = countingClient(kms.url);
    let now = 1_000_000;
    const sealer = new KmsEnvelopeEncryption({ client, keyId: keyArn, now: () => now, maxKeyAgeMs: 60_000 });
    const sealed = [];
    for (let i = 0; i < 5; i++) sealed.push(await sealer.seal(`token-${i}`, context));
    for (const s of sealed) await sealer.open(s, context);
    expect(calls).toEqual(['GenerateDataKeyCommand']);
    now += 60_001;
    await sealer.seal('later', context);
    expect(calls).toEqual(['GenerateDataKeyCommand', 'GenerateDataKeyCommand']);
  });

  it('asks for a new data key after maxKeyUses seals', async () => {
    const { client, calls } = countingClient(kms.url);
    const sealer = new KmsEnvelopeEncryption({ client, keyId: keyArn, maxKeyUses: 2 });
    for (let i = 0; i < 5; i++) await sealer.seal(`token-${i}`, context);
    expect(calls.filter((c) => c === 'GenerateDataKeyCommand')).toHaveLength(3);
  });

  it('keeps at most maxCachedKeys data keys: an evicted key is decrypted by KMS again', async () => {
    const { client, calls } = countingClient(kms.url);
    const sealer = new KmsEnvelopeEncryption({ client, keyId: keyArn, maxCachedKeys: 2 });
    const first = await sealer.seal('a', { ...context, service: 's1' });
    await sealer.seal('b', { ...context, service: 's2' });
    await sealer.seal('c', { ...context, service: 's3' });
    calls.length = 0;
    await expect(sealer.open(first, { ...context, service: 's1' })).resolves.toBe('a');
    expect(calls).toEqual(['DecryptCommand']);
  });
});

describe('the token cache as deployed: tokens sealed in DynamoDB', () => {
  let h: BrokerHarness;

  beforeAll(async () => {
    h = await BrokerHarness.start();
  });
  afterAll(async () => {
    await h.close();
  });

  it('stores no readable token in the table: only a sealed token and an encrypted data key', async () => {
    await h.createService('sealed');
    const res = await h.token('GET', 'sealed');
    const out = await dynamoDbLocalClient().send(
      new GetItemCommand({
        TableName: h.tables.tokenCacheTable,
        Key: { service: { S: 'sealed' }, cache_key: { S: await cacheKeyOf(h, 'sealed') } },
        ConsistentRead: true,
      }),
    );
    const item = out.Item ?? {};
    expect(item.access_token).toBeUndefined();
    expect(item.sealed_token?.S).toBeDefined();
    expect(item.data_key?.S).toBeDefined();
    expect(JSON.stringify(item)).not.toContain(res.body.access_token);
  });

  it('does not serve a sealed token copied under another service: it is a miss, and Entra is asked', async () => {
    await h.createService('victim');
    await h.createService('thief');
    await h.token('GET', 'victim');
    const client = dynamoDbLocalClient();
    const victimItem = (
      await client.send(
        new GetItemCommand({
          TableName: h.tables.tokenCacheTable,
          Key: { service: { S: 'victim' }, cache_key: { S: await cacheKeyOf(h, 'victim') } },
          ConsistentRead: true,
        }),
      )
    ).Item;
    await client.send(
      new PutItemCommand({
        TableName: h.tables.tokenCacheTable,
        Item: { ...victimItem, service: { S: 'thief' }, cache_key: { S: await cacheKeyOf(h, 'thief') } },
      }),
    );
    const before = h.emulator.tokenRequestCount;
    const res = await h.token('GET', 'thief');
    expect(res.status).toBe(200);
    expect(h.emulator.tokenRequestCount - before).toBe(1);
  });

  it('does not serve a sealed token of an older version of the service replayed into the current slot', async () => {
    // Prepare: a token cached under version 1; the service is changed (version 2) and a new token cached
    await h.createService('replayed');
    const old = await h.token('GET', 'replayed');
    const client = dynamoDbLocalClient();
    const oldKey = await cacheKeyOf(h, 'replayed');
    const oldItem = (
      await client.send(
        new GetItemCommand({
          TableName: h.tables.tokenCacheTable,
          Key: { service: { S: 'replayed' }, cache_key: { S: oldKey } },
          ConsistentRead: true,
        }),
      )
    ).Item;
    expect((await h.admin('PATCH', { label: 'version 2' }, { name: 'replayed' })).status).toBe(200);
    const current = await h.token('GET', 'replayed');
    // Act: someone who can write the table puts the version-1 item into the version-2 slot
    await client.send(
      new PutItemCommand({
        TableName: h.tables.tokenCacheTable,
        Item: { ...oldItem, cache_key: { S: await cacheKeyOf(h, 'replayed') } },
      }),
    );
    h.coldStart();
    const res = await h.token('GET', 'replayed');
    // Assess: not the old configuration's token
    expect(res.status).toBe(200);
    expect(res.body.access_token).not.toBe(old.body.access_token);
    expect(current.body.access_token).not.toBe(old.body.access_token);
  });
});

/** The cache item sort key of a service's default scope: `<version>#<scope>`, the version being the ETag. */
async function cacheKeyOf(h: BrokerHarness, name: string): Promise<string> {
  const res = await h.admin('GET', undefined, { name });
  return `${res.headers.etag?.replaceAll('"', '')}#https://graph.microsoft.com/.default`;
}
