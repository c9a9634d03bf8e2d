import { Logger } from '@aws-lambda-powertools/logger';
import { type DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { AuthorityPolicy } from '../../lib/authority';
import { DynamoDbCreateJournal } from '../../lib/create-journal';
import { DeadlineExceededError } from '../../lib/errors';
import { SecretReferencePolicy } from '../../lib/secret-reference';
import { SecretsManagerSecretStore } from '../../lib/secret-store';
import { ServiceAdministration } from '../../lib/service-admin';
import { DynamoDbServiceRegistry } from '../../lib/service-registry';
import { SERVICES_TABLE } from '../../lib/tables';
import { DynamoDbTokenCache } from '../../lib/token-cache';
import { BlackHole } from '../fixtures/black-hole';
import { brokerDynamoDb, brokerSecretsManager } from '../fixtures/broker-aws';
import { BrokerHarness } from '../fixtures/broker-harness';
import { BrokerProcess, sameDeploymentAs } from '../fixtures/broker-process';
import { dynamoDbLocalClient, dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { secretNamesOfService, secretsManagerClient } from '../fixtures/secrets-manager';

/**
 * A `{"resource": [...]}` create stays all-or-nothing even when its function is cut off part way (issue 9 §8).
 * Two defences, both against real servers (DynamoDB Local, the embedded Secrets Manager server):
 * - a create whose deadline comes too close stops and undoes what it wrote (a clock that moves with every step);
 * - a create cut off anyway (here: the broker process killed while Secrets Manager hangs) leaves a journal
 *   intent, and the next create, once that intent has expired, removes every service and secret it planned.
 */

/** The harness's secret name prefix (BrokerHarness sets TOKEN_BROKER_SECRET_PREFIX to it). */
const PREFIX = 'token-broker/test/services/';

let h: BrokerHarness;
let ddb: DynamoDBClient;
let sm: SecretsManagerClient;
/** The broker's own clients (functions/aws-clients.ts), for the adapters. */
let store: ReturnType<typeof brokerDynamoDb>;
let secretStore: ReturnType<typeof brokerSecretsManager>;
let registry: DynamoDbServiceRegistry;
let n = 0;
const fresh = (stem: string) => `${stem}${++n}`;

beforeAll(async () => {
  h = await BrokerHarness.start();
  ddb = dynamoDbLocalClient();
  sm = secretsManagerClient(h.secretsManagerUrl);
  store = brokerDynamoDb(dynamoDbLocalEndpoint());
  secretStore = brokerSecretsManager(h.secretsManagerUrl);
  registry = new DynamoDbServiceRegistry({ client: store, tableName: h.tables.servicesTable });
});
afterAll(async () => {
  sm.destroy();
  ddb.destroy();
  store.destroy();
  secretStore.destroy();
  await h.close();
});

/** ServiceAdministration on the harness's stores (as the admin function builds it), with its own clock. */
function administration(now: () => number): ServiceAdministration {
  return new ServiceAdministration({
    registry,
    secrets: new SecretsManagerSecretStore({ client: secretStore }),
    cache: new DynamoDbTokenCache({ client: store, tableName: h.tables.tokenCacheTable }),
    journal: new DynamoDbCreateJournal({ client: store, tableName: h.tables.servicesTable }),
    authority: new AuthorityPolicy(new URL(h.emulator.url).host),
    secretReferences: new SecretReferencePolicy(PREFIX),
    logger: new Logger({ serviceName: 'token-broker-test', logLevel: 'SILENT' }),
    secretPrefix: PREFIX,
    now,
  });
}

/** Names of the batch that exist as services, and of their secrets (scheduled for deletion included). */
async function leftovers(names: readonly string[]): Promise<{ services: string[]; secrets: string[] }> {
  const services: string[] = [];
  const secrets: string[] = [];
  for (const name of names) {
    if (await registry.get(name)) services.push(name);
    secrets.push(...(await secretNamesOfService(sm, name)));
  }
  return { services, secrets };
}

/** Journal items (creates in progress or cut off) in the services table. */
async function journalItems(): Promise<number> {
  const out = await ddb.send(
    new ScanCommand({
      TableName: h.tables.servicesTable,
      ConsistentRead: true,
      FilterExpression: 'begins_with(#name, :journal)',
      ExpressionAttributeNames: { '#name': SERVICES_TABLE.partitionKey },
      ExpressionAttributeValues: { ':journal': { S: SERVICES_TABLE.journalKeyPrefix } },
    }),
  );
  return out.Count ?? 0;
}

describe('a batch whose deadline comes too close part way', () => {
  it('stops, undoes every service and secret it wrote, and answers DeadlineExceededError (504)', async () => {
    // Prepare: every reading of the clock moves it 500 ms; the deadline is 6 s away, so it comes mid-batch
    let t = Date.now();
    const admin = administration(() => (t += 500));
    const names = Array.from({ length: 8 }, () => fresh('budget'));
    // Act
    const result = admin.create(
      { resource: names.map((name) => h.serviceBody(name)) },
      { deadline: t + 6000 },
    );
    // Assess
    await expect(result).rejects.toBeInstanceOf(DeadlineExceededError);
    expect(await leftovers(names)).toEqual({ services: [], secrets: [] });
  });

  it('leaves no journal intent behind once it has undone itself', async () => {
    let t = Date.now();
    const admin = administration(() => (t += 500));
    const before = await journalItems();
    const names = Array.from({ length: 8 }, () => fresh('budget'));
    await admin
      .create({ resource: names.map((name) => h.serviceBody(name)) }, { deadline: t + 6000 })
      .catch(() => undefined);
    expect(await journalItems()).toBe(before);
  });

  it('creates the whole batch when the deadline leaves room for it', async () => {
    let t = Date.now();
    const admin = administration(() => (t += 500));
    const names = Array.from({ length: 3 }, () => fresh('roomy'));
    await admin.create({ resource: names.map((name) => h.serviceBody(name)) }, { deadline: t + 60_000 });
    expect((await leftovers(names)).services).toEqual(names);
  });
});

describe('a batch cut off part way (the broker process killed while Secrets Manager hangs)', () => {
  const names = Array.from({ length: 5 }, () => fresh('cutoff'));
  let hole: BlackHole;
  let broker: BrokerProcess;

  beforeAll(async () => {
    // Prepare: a broker whose Secrets Manager answers two CreateSecret calls and then hangs; it is killed as soon
    // as the third is swallowed, so two services of the batch are stored and nothing is undone by the broker
    hole = await BlackHole.start(h.secretsManagerUrl);
    broker = await BrokerProcess.start({
      env: sameDeploymentAs(h, { AWS_ENDPOINT_URL_SECRETS_MANAGER: hole.url }),
    });
    hole.silenceAfter(2);
    const swallowed = hole.nextSwallowed();
    const pending = broker
      .request('POST', '/api/v2/system/service', {
        body: { resource: names.map((name) => h.serviceBody(name)) },
      })
      .catch(() => undefined);
    await swallowed;
    broker.kill();
    await pending;
  }, 60_000);
  afterAll(async () => {
    broker?.kill();
    await hole?.close();
  });

  it('leaves part of the batch behind at first (what the next create must undo)', async () => {
    expect((await leftovers(names)).services).toEqual(names.slice(0, 2));
  });

  it('is undone by the next create once its intent has expired: no service and no secret of it remain', async () => {
    // Act: the next create, an hour later (every intent has expired by then)
    const admin = administration(() => Date.now() + 60 * 60_000);
    const next = fresh('next');
    await admin.create(h.serviceBody(next));
    // Assess
    expect(await leftovers(names)).toEqual({ services: [], secrets: [] });
    expect(await registry.get(next)).toMatchObject({ name: next });
  });

  it('leaves no journal intent behind after undoing it', async () => {
    expect(await journalItems()).toBe(0);
  });
});

describe('a batch create that is not cut off', () => {
  it('leaves no journal intent behind', async () => {
    const before = await journalItems();
    const res = await h.admin('POST', { resource: [h.serviceBody(fresh('ok')), h.serviceBody(fresh('ok'))] });
    expect(res.status).toBe(201);
    expect(await journalItems()).toBe(before);
  });

  it('is not undone by a later create', async () => {
    const names = [fresh('kept'), fresh('kept')];
    await h.admin('POST', { resource: names.map((name) => h.serviceBody(name)) });
    await administration(() => Date.now() + 60 * 60_000).create(h.serviceBody(fresh('later')));
    expect((await leftovers(names)).services).toEqual(names);
    expect((await leftovers(names)).secrets).toHaveLength(2);
  });
});
