import { randomUUID } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { DynamoDbServiceRegistry } from '../../lib/service-registry';
import { brokerDynamoDb } from '../fixtures/broker-aws';
import { BrokerHarness } from '../fixtures/broker-harness';
import { dynamoDbLocalClient, dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { expectErrorShape } from '../fixtures/error-shape';
import { secretsManagerClient } from '../fixtures/secrets-manager';

/**
 * A service must never borrow another service's secret (issue 9 §4). Managed secrets are named
 * `<prefix><service>/<version>`, and the version is the ETag anyone with admin access reads: an administrator of
 * one service could point it at another service's managed secret, by complete or partial ARN, and receive that
 * application's tokens. Production handlers against DynamoDB Local, the embedded Secrets Manager server (which
 * resolves partial ARNs as AWS does) and the Entra emulator.
 */

/** The harness's secret name prefix (BrokerHarness sets TOKEN_BROKER_SECRET_PREFIX to it). */
const PREFIX = 'token-broker/test/services/';
const ARN_PREFIX = 'arn:aws:secretsmanager:us-east-1:000000000000:secret:';

let h: BrokerHarness;
let ddb: DynamoDBClient;
let sm: SecretsManagerClient;
/** The broker's own DynamoDB client (functions/aws-clients.ts), for the adapters. */
let store: ReturnType<typeof brokerDynamoDb>;
let registry: DynamoDbServiceRegistry;
let n = 0;
const fresh = (stem: string) => `${stem}${++n}`;

beforeAll(async () => {
  h = await BrokerHarness.start();
  ddb = dynamoDbLocalClient();
  sm = secretsManagerClient(h.secretsManagerUrl);
  store = brokerDynamoDb(dynamoDbLocalEndpoint());
  registry = new DynamoDbServiceRegistry({ client: store, tableName: h.tables.servicesTable });
});
afterAll(async () => {
  sm.destroy();
  ddb.destroy();
  store.destroy();
  await h.close();
});

/** A service body that references an existing secret instead of carrying a value. */
function referencing(name: string, arn: string) {
  const body = h.serviceBody(name);
  const { client_secret: _secret, ...config } = body.config;
  return { ...body, config: { ...config, client_secret_arn: arn } };
}

/** Creates a victim service with a managed secret; returns its ETag (the version in its secret's name). */
async function victim(): Promise<{ name: string; version: string; arn: string }> {
  const name = fresh('victim');
  const created = await h.createService(name);
  const version = String(created.headers.etag).replace(/"/g, '');
  const record = await registry.get(name);
  return { name, version, arn: record?.secret?.arn as string };
}

/** Asserts a 400 in the API's error shape that names config.client_secret_arn. */
function expectRefusedField(res: { status: number; body: unknown }): void {
  expect(res.status).toBe(400);
  expectErrorShape(400, res.body);
  const error = (res.body as { error: { message: string; context?: { field?: string } } }).error;
  expect(error.message).toMatch(/^config\.client_secret_arn: /);
  expect(error.context?.field).toBe('config.client_secret_arn');
}

describe('creating a service that points at another service’s managed secret', () => {
  it('is refused with 400 when the ARN is partial (name and version from the ETag, no suffix)', async () => {
    const v = await victim();
    const name = fresh('borrower');
    const res = await h.admin('POST', referencing(name, `${ARN_PREFIX}${PREFIX}${v.name}/${v.version}`));
    expectRefusedField(res);
    expect((await h.admin('GET', undefined, { name })).status).toBe(404);
  });

  it('is refused with 400 when the ARN is complete', async () => {
    const v = await victim();
    const name = fresh('borrower');
    const res = await h.admin('POST', referencing(name, v.arn));
    expectRefusedField(res);
    expect((await h.admin('GET', undefined, { name })).status).toBe(404);
  });

  it('is refused in a {"resource": [...]} batch too, and nothing of the batch is created', async () => {
    const v = await victim();
    const ok = fresh('batch');
    const borrower = fresh('borrower');
    const res = await h.admin('POST', {
      resource: [h.serviceBody(ok), referencing(borrower, v.arn)],
    });
    expectRefusedField(res);
    expect((await h.admin('GET', undefined, { name: ok })).status).toBe(404);
  });
});

describe('switching a service to another service’s managed secret with PATCH', () => {
  it('is refused with 400 and the service keeps its own secret', async () => {
    const v = await victim();
    const name = fresh('patcher');
    await h.createService(name);
    const own = (await registry.get(name))?.secret?.arn;
    const res = await h.admin('PATCH', { config: { client_secret_arn: v.arn } }, { name });
    expectRefusedField(res);
    expect((await registry.get(name))?.secret?.arn).toBe(own);
  });
});

describe('a secret that only looks like, or is only tagged as, another service’s', () => {
  it('refuses a secret tagged as another service’s managed secret, whatever its name', async () => {
    const v = await victim();
    const out = await sm.send(
      new CreateSecretCommand({
        Name: `${PREFIX}brought/${fresh('tagged')}`,
        SecretString: h.clientSecret,
        Tags: [{ Key: 'token-broker:service', Value: v.name }],
      }),
    );
    const res = await h.admin('POST', referencing(fresh('borrower'), out.ARN as string));
    expectRefusedField(res);
  });

  it('refuses a secret named like another service’s managed secret, even without the tag', async () => {
    const v = await victim();
    const out = await sm.send(
      new CreateSecretCommand({ Name: `${PREFIX}${v.name}/${randomUUID()}`, SecretString: h.clientSecret }),
    );
    const res = await h.admin('POST', referencing(fresh('borrower'), out.ARN as string));
    expectRefusedField(res);
  });
});

describe('partial ARNs', () => {
  it('refuses the partial ARN of a brought secret under the prefix with 400', async () => {
    const secretName = `${PREFIX}brought/${fresh('partial')}`;
    const out = await sm.send(new CreateSecretCommand({ Name: secretName, SecretString: h.clientSecret }));
    // Prepare: the server resolves the partial ARN (as AWS does), so only the broker's check can refuse it
    const described = await sm.send(new DescribeSecretCommand({ SecretId: `${ARN_PREFIX}${secretName}` }));
    expect(described.ARN).toBe(out.ARN);
    // Act
    const res = await h.admin('POST', referencing(fresh('partial'), `${ARN_PREFIX}${secretName}`));
    // Assess
    expectRefusedField(res);
    expect(res.body.error.message).toContain('complete ARN');
  });

  it('accepts the complete ARN of the same brought secret (201)', async () => {
    const out = await sm.send(
      new CreateSecretCommand({
        Name: `${PREFIX}brought/${fresh('complete')}`,
        SecretString: h.clientSecret,
      }),
    );
    const res = await h.admin('POST', referencing(fresh('complete'), out.ARN as string));
    expect(res.status).toBe(201);
    expect(res.body.config.client_secret_arn).toBe(out.ARN);
  });
});

describe('managed secrets', () => {
  it('carry the tag that names their service', async () => {
    const v = await victim();
    const described = await sm.send(new DescribeSecretCommand({ SecretId: v.arn }));
    expect(described.Tags).toContainEqual({ Key: 'token-broker:service', Value: v.name });
  });
});
