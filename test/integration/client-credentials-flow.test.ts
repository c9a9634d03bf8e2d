import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Logger } from '@aws-lambda-powertools/logger';
import { type DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { AuthorityPolicy } from '../../lib/authority';
import { ClientCredentialsFlow } from '../../lib/client-credentials-flow';
import { EntraTokenClient } from '../../lib/entra-token-client';
import { DynamoDbRefreshCoordinator } from '../../lib/refresh-coordinator';
import { SecretReferencePolicy } from '../../lib/secret-reference';
import { SecretsManagerSecretStore } from '../../lib/secret-store';
import { ServiceAdministration } from '../../lib/service-admin';
import { DynamoDbServiceRegistry } from '../../lib/service-registry';
import { TOKEN_CACHE_TABLE } from '../../lib/tables';
import { DynamoDbTokenCache } from '../../lib/token-cache';
import { tokenResponseBody } from '../../lib/token-response';
import {
  type RunningSecretsManagerServer,
  startSecretsManagerServer,
} from '../../local/secrets-manager-server';
import type { TableNames } from '../../local/tables';
import { brokerDynamoDb, brokerSecretsManager } from '../fixtures/broker-aws';
import { dynamoDbLocalClient, dynamoDbLocalEndpoint, freshTables } from '../fixtures/dynamodb';
import { EntraEmulator } from '../fixtures/entra-emulator';
import { secretsManagerClient } from '../fixtures/secrets-manager';

/**
 * The client credentials flow over real adapters (DynamoDB Local, the embedded Secrets Manager server, the
 * Entra emulator), with one injected clock shared by the flow, the token cache, the refresh lease and the Entra
 * client, so expiry is tested by moving the clock, never by waiting.
 */

const LIFETIME_S = 3599;
const SECRET_PREFIX = 'token-broker/flow/services/';
/** Whole seconds, so that `expires_at` and the TTL attribute are exact. */
const START = Date.UTC(2031, 4, 6, 12, 0, 0);

describe('ClientCredentialsFlow with a fixed clock', () => {
  const tenantId = randomUUID();
  const clientId = randomUUID();
  const clientSecret = `secret-${randomUUID()}`;
  let now = START;
  const clock = () => now;

  let emulator: EntraEmulator;
  let dynamodb: DynamoDBClient;
  let tables: TableNames;
  let dataDir: string;
  let secretsServer: RunningSecretsManagerServer;
  let secretsClient: SecretsManagerClient;
  /** The broker's own clients (functions/aws-clients.ts), for the adapters. */
  let store: ReturnType<typeof brokerDynamoDb>;
  let secretStore: ReturnType<typeof brokerSecretsManager>;
  let flow: ClientCredentialsFlow;
  let admin: ServiceAdministration;
  let n = 0;
  const fresh = () => `flow${++n}`;

  const createService = (name: string) =>
    admin.create({
      name,
      config: {
        client_id: clientId,
        client_secret: clientSecret,
        tenant_id: tenantId,
        authority_url: `${emulator.url}/{tenant_id}`,
      },
    });

  /** The raw cache item of a service's only scope, read straight from DynamoDB Local. */
  async function rawCacheItem(service: string) {
    const record = await new DynamoDbServiceRegistry({
      client: store,
      tableName: tables.servicesTable,
    }).get(service);
    const out = await dynamodb.send(
      new GetItemCommand({
        TableName: tables.tokenCacheTable,
        Key: {
          [TOKEN_CACHE_TABLE.partitionKey]: { S: service },
          [TOKEN_CACHE_TABLE.sortKey]: { S: `${record?.version}#https://graph.microsoft.com/.default` },
        },
        ConsistentRead: true,
      }),
    );
    return out.Item;
  }

  beforeAll(async () => {
    emulator = await EntraEmulator.start({
      tokenLifetimeSeconds: LIFETIME_S,
      apps: [{ tenantId, clientId, clientSecrets: [clientSecret] }],
    });
    dynamodb = dynamoDbLocalClient();
    tables = await freshTables(dynamodb);
    dataDir = await mkdtemp(path.join(tmpdir(), 'flow-'));
    secretsServer = await startSecretsManagerServer({ dataDir });
    secretsClient = secretsManagerClient(secretsServer.url);
    store = brokerDynamoDb(dynamoDbLocalEndpoint());
    secretStore = brokerSecretsManager(secretsServer.url);

    const logger = new Logger({ serviceName: 'token-broker-test', logLevel: 'SILENT' });
    const registry = new DynamoDbServiceRegistry({ client: store, tableName: tables.servicesTable });
    const cache = new DynamoDbTokenCache({ client: store, tableName: tables.tokenCacheTable, now: clock });
    const secrets = new SecretsManagerSecretStore({ client: secretStore });
    const authority = new AuthorityPolicy(new URL(emulator.url).host);
    const entra = new EntraTokenClient({ timeoutMs: 5000, now: clock });
    flow = new ClientCredentialsFlow({
      registry,
      cache,
      coordinator: new DynamoDbRefreshCoordinator({
        client: store,
        tableName: tables.tokenCacheTable,
        now: clock,
      }),
      secrets,
      entra,
      authority,
      logger,
      // Refresh-ahead off (refresh point = expiry): these tests are about the 60 s margin and expiry alone.
      settings: { refreshFraction: 1 },
      now: clock,
    });
    admin = new ServiceAdministration({
      registry,
      secrets,
      cache,
      authority,
      secretReferences: new SecretReferencePolicy(SECRET_PREFIX),
      logger,
      secretPrefix: SECRET_PREFIX,
      now: clock,
    });
  });
  afterAll(async () => {
    await emulator.stop();
    secretsClient.destroy();
    secretStore.destroy();
    store.destroy();
    await secretsServer.close();
    dynamodb.destroy();
    await rm(dataDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    now = START;
  });
  afterEach(async () => {
    await flow.settled();
  });

  it('counts the lifetime from when the request was sent: expires_at = acquired_at + expires_in', async () => {
    const name = fresh();
    await createService(name);
    const { token, cache } = await flow.getToken(name);
    const body = tokenResponseBody(token, now);
    expect(cache).toBe('miss');
    expect(body.expires_in).toBe(LIFETIME_S);
    expect(body.acquired_at).toBe(new Date(START).toISOString().replace('.000Z', 'Z'));
    expect(Date.parse(body.expires_at)).toBe(START + LIFETIME_S * 1000);
  });

  it('serves the cached token until 61 s before expiry', async () => {
    // Prepare
    const name = fresh();
    await createService(name);
    const first = await flow.getToken(name);
    const before = emulator.tokenRequestCount;
    // Act
    now = START + (LIFETIME_S - 61) * 1000;
    const later = await flow.getToken(name);
    // Assess
    expect(later.cache).toBe('hit');
    expect(later.token.accessToken).toBe(first.token.accessToken);
    expect(emulator.tokenRequestCount).toBe(before);
  });

  it('fetches a new token from Entra once only 60 s of validity are left', async () => {
    // Prepare
    const name = fresh();
    await createService(name);
    const first = await flow.getToken(name);
    const before = emulator.tokenRequestCount;
    // Act
    now = START + (LIFETIME_S - 60) * 1000;
    const later = await flow.getToken(name);
    // Assess
    expect(later.cache).toBe('miss');
    expect(later.token.accessToken).not.toBe(first.token.accessToken);
    expect(emulator.tokenRequestCount - before).toBe(1);
    expect(tokenResponseBody(later.token, now).expires_in).toBe(LIFETIME_S);
  });

  it('counts expires_in down with the clock on cache hits, keeping acquired_at and expires_at', async () => {
    const name = fresh();
    await createService(name);
    const first = await flow.getToken(name);
    now = START + 1000 * 1000 + 400;
    const later = await flow.getToken(name);
    expect(later.cache).toBe('hit');
    const body = tokenResponseBody(later.token, now);
    expect(body.expires_in).toBe(LIFETIME_S - 1001);
    expect(body.acquired_at).toBe(tokenResponseBody(first.token, START).acquired_at);
    expect(body.expires_at).toBe(tokenResponseBody(first.token, START).expires_at);
  });

  it('ignores a cached item whose TTL has passed although DynamoDB has not deleted it', async () => {
    // Prepare
    const name = fresh();
    await createService(name);
    const first = await flow.getToken(name);
    now = START + (LIFETIME_S - 30) * 1000;
    const item = await rawCacheItem(name);
    expect(item).toBeDefined(); // still there: DynamoDB deletes expired items lazily
    expect(Number(item?.[TOKEN_CACHE_TABLE.ttlAttribute]?.N) * 1000).toBeLessThan(now);
    const before = emulator.tokenRequestCount;
    // Act
    const later = await flow.getToken(name);
    // Assess
    expect(later.cache).toBe('miss');
    expect(later.token.accessToken).not.toBe(first.token.accessToken);
    expect(emulator.tokenRequestCount - before).toBe(1);
  });

  it('writes the TTL attribute as expiry − 60 s in epoch seconds', async () => {
    const name = fresh();
    await createService(name);
    await flow.getToken(name);
    const item = await rawCacheItem(name);
    expect(Number(item?.[TOKEN_CACHE_TABLE.ttlAttribute]?.N)).toBe((START + (LIFETIME_S - 60) * 1000) / 1000);
  });

  it('does not serve the old cached token to a service re-created under the same name', async () => {
    // Prepare
    const name = fresh();
    await createService(name);
    const old = await flow.getToken(name);
    // Only the registry item goes: the old token stays in the table, as when the cache clear of a deletion
    // fails (which deletion tolerates). Versioning alone must keep it unreachable.
    await new DynamoDbServiceRegistry({ client: store, tableName: tables.servicesTable }).delete(name);
    await createService(name);
    const before = emulator.tokenRequestCount;
    // Act
    const res = await flow.getToken(name);
    // Assess
    expect(res.cache).toBe('miss');
    expect(res.token.accessToken).not.toBe(old.token.accessToken);
    expect(emulator.tokenRequestCount - before).toBe(1);
  });

  it('does not serve a token cached under an old version even when it is still in the table', async () => {
    // Prepare: the service's registry item is replaced directly, so the old cache item is never cleared
    const name = fresh();
    await createService(name);
    const old = await flow.getToken(name);
    const registry = new DynamoDbServiceRegistry({ client: store, tableName: tables.servicesTable });
    const record = await registry.get(name);
    if (!record) throw new Error('service missing');
    await registry.replace({ ...record, version: randomUUID() }, record.version);
    // Act
    const res = await flow.getToken(name);
    // Assess
    expect(res.cache).toBe('miss');
    expect(res.token.accessToken).not.toBe(old.token.accessToken);
  });
});
