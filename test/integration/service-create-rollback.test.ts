import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Logger } from '@aws-lambda-powertools/logger';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { AuthorityPolicy } from '../../lib/authority';
import { StoreError } from '../../lib/errors';
import { SecretReferencePolicy } from '../../lib/secret-reference';
import { SecretsManagerSecretStore } from '../../lib/secret-store';
import { ServiceAdministration } from '../../lib/service-admin';
import type { ServiceRecord } from '../../lib/service-config';
import { DynamoDbServiceRegistry, type ServiceRegistry } from '../../lib/service-registry';
import { DynamoDbTokenCache } from '../../lib/token-cache';
import {
  type RunningSecretsManagerServer,
  startSecretsManagerServer,
} from '../../local/secrets-manager-server';
import type { TableNames } from '../../local/tables';
import { brokerDynamoDb, brokerSecretsManager } from '../fixtures/broker-aws';
import { dynamoDbLocalClient, dynamoDbLocalEndpoint, freshTables } from '../fixtures/dynamodb';
import { listAllSecrets, secretsManagerClient } from '../fixtures/secrets-manager';

/**
 * Nothing is left half-written when storing a service fails after its secret was created. The stores are real
 * (DynamoDB Local, the embedded Secrets Manager server); only the failure of the services-table write is
 * injected, since no local server fails a write on demand.
 */

const SECRET_PREFIX = 'token-broker/rollback/services/';

/** The real DynamoDB registry, except that `create` fails for the names in `failing`. */
class FailingCreateRegistry implements ServiceRegistry {
  /** Names whose `create` throws without writing (the write was refused). */
  readonly failing = new Set<string>();
  /** Names whose `create` writes the item and then throws (the write happened; its answer was lost). */
  readonly failingAfterWrite = new Set<string>();

  constructor(private readonly inner: ServiceRegistry) {}

  get(name: string) {
    return this.inner.get(name);
  }
  async create(record: ServiceRecord) {
    if (this.failing.has(record.name)) {
      throw new StoreError('services table write failed', { cause: new Error('injected fault') });
    }
    await this.inner.create(record);
    if (this.failingAfterWrite.has(record.name)) {
      throw new StoreError('services table write failed', { cause: new Error('injected: response lost') });
    }
  }
  replace(record: ServiceRecord, expectedVersion: string) {
    return this.inner.replace(record, expectedVersion);
  }
  delete(name: string, expectedVersion?: string) {
    return this.inner.delete(name, expectedVersion);
  }
  list() {
    return this.inner.list();
  }
}

describe('ServiceAdministration.create when the services table write fails', () => {
  const tenantId = randomUUID();
  const clientId = randomUUID();
  let dynamodb: DynamoDBClient;
  let tables: TableNames;
  let dataDir: string;
  let server: RunningSecretsManagerServer;
  let secrets: SecretsManagerClient;
  /** The broker's own clients (functions/aws-clients.ts), for the adapters. */
  let store: ReturnType<typeof brokerDynamoDb>;
  let secretStore: ReturnType<typeof brokerSecretsManager>;
  let registry: FailingCreateRegistry;
  let admin: ServiceAdministration;
  let n = 0;
  const fresh = () => `rollback${++n}`;

  const serviceBody = (name: string) => ({
    name,
    config: { client_id: clientId, client_secret: `secret-${randomUUID()}`, tenant_id: tenantId },
  });

  beforeAll(async () => {
    dynamodb = dynamoDbLocalClient();
    tables = await freshTables(dynamodb);
    store = brokerDynamoDb(dynamoDbLocalEndpoint());
  });
  afterAll(() => {
    dynamodb.destroy();
    store.destroy();
  });

  beforeEach(async () => {
    // A fresh secret store per test: "no secret left" means the store is empty.
    dataDir = await mkdtemp(path.join(tmpdir(), 'rollback-'));
    server = await startSecretsManagerServer({ dataDir });
    secrets = secretsManagerClient(server.url);
    secretStore = brokerSecretsManager(server.url);
    registry = new FailingCreateRegistry(
      new DynamoDbServiceRegistry({ client: store, tableName: tables.servicesTable }),
    );
    admin = new ServiceAdministration({
      registry,
      secrets: new SecretsManagerSecretStore({ client: secretStore }),
      cache: new DynamoDbTokenCache({ client: store, tableName: tables.tokenCacheTable }),
      authority: new AuthorityPolicy(),
      secretReferences: new SecretReferencePolicy(SECRET_PREFIX),
      logger: new Logger({ serviceName: 'token-broker-test', logLevel: 'SILENT' }),
      secretPrefix: SECRET_PREFIX,
    });
  });
  afterEach(async () => {
    secrets.destroy();
    secretStore.destroy();
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('passes the store failure on to the caller', async () => {
    const name = fresh();
    registry.failing.add(name);
    await expect(admin.create(serviceBody(name))).rejects.toBeInstanceOf(StoreError);
  });

  it('force-deletes the secret it created for the service', async () => {
    // Prepare
    const name = fresh();
    registry.failing.add(name);
    // Act
    await admin.create(serviceBody(name)).catch(() => undefined);
    // Assess: not even scheduled for deletion
    expect(await listAllSecrets(secrets)).toEqual([]);
  });

  it('leaves no service behind', async () => {
    const name = fresh();
    registry.failing.add(name);
    await admin.create(serviceBody(name)).catch(() => undefined);
    expect(await registry.get(name)).toBeUndefined();
  });

  it('removes the first service of an envelope and its secret when the second fails', async () => {
    // Prepare
    const first = fresh();
    const second = fresh();
    registry.failing.add(second);
    // Act
    const result = admin.create({ resource: [serviceBody(first), serviceBody(second)] });
    // Assess
    await expect(result).rejects.toBeInstanceOf(StoreError);
    expect(await registry.get(first)).toBeUndefined();
    expect(await registry.get(second)).toBeUndefined();
    expect(await listAllSecrets(secrets)).toEqual([]);
  });

  it('leaves no service pointing at a deleted secret when the write happened but its answer was lost', async () => {
    // Prepare: DynamoDB applied the write, but the SDK reported a failure (e.g. a timeout after the write, or
    // a retried conditional put that then fails its own condition).
    const name = fresh();
    registry.failingAfterWrite.add(name);
    // Act
    await admin.create(serviceBody(name)).catch(() => undefined);
    // Assess: the caller was told the create failed, so neither the service nor its secret may remain; above
    // all, no service may be left pointing at a secret that was deleted
    expect(await registry.get(name)).toBeUndefined();
    expect(await listAllSecrets(secrets)).toEqual([]);
  });

  it('creates the service normally when nothing fails', async () => {
    const name = fresh();
    const result = await admin.create(serviceBody(name));
    expect(result.kind).toBe('single');
    expect(await registry.get(name)).toMatchObject({ name });
    expect(await listAllSecrets(secrets)).toHaveLength(1);
  });
});
