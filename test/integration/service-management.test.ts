import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Logger } from '@aws-lambda-powertools/logger';
import { type DynamoDBClient, QueryCommand } from '@aws-sdk/client-dynamodb';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  RestoreSecretCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { AuthorityPolicy } from '../../lib/authority';
import { ValidationError } from '../../lib/errors';
import { SecretReferencePolicy } from '../../lib/secret-reference';
import { SecretsManagerSecretStore } from '../../lib/secret-store';
import { ServiceAdministration } from '../../lib/service-admin';
import { DynamoDbServiceRegistry } from '../../lib/service-registry';
import { TOKEN_CACHE_TABLE } from '../../lib/tables';
import { DynamoDbTokenCache } from '../../lib/token-cache';
import { DEFAULT_MEMORY_BOUND_MS } from '../../lib/token-memory';
import { apiGatewayEvent } from '../fixtures/apigw-event';
import { brokerDynamoDb, brokerSecretsManager } from '../fixtures/broker-aws';
import { BrokerHarness } from '../fixtures/broker-harness';
import { BrokerProcess, sameDeploymentAs } from '../fixtures/broker-process';
import { dynamoDbLocalClient, dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { expectErrorShape } from '../fixtures/error-shape';
import { listAllSecrets, secretNamesOfService, secretsManagerClient } from '../fixtures/secrets-manager';

/**
 * Managing services after they were created (issue 4): read, partial update, rotation, delete, optimistic
 * concurrency, secrets brought by the administrator, instant invalidation (also seen by a second broker process),
 * configuration as code and the OpenAPI document. Production handlers against DynamoDB Local, the embedded
 * Secrets Manager server and the Entra emulator, over real sockets.
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
const fresh = (stem = 'svc') => `${stem}${++n}`;

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
beforeEach(() => h.emulator.clearFaults());

type ServiceBody = ReturnType<BrokerHarness['serviceBody']>;

/** The service as the API shows it: the body that was sent, minus the client secret. */
function withoutSecret(body: ServiceBody) {
  const { client_secret: _secret, ...config } = body.config;
  return { ...body, config };
}

/** The ETag of a response as an If-Match header value. */
const ifMatch = (etag: string | undefined): Record<string, string> => ({ 'If-Match': String(etag) });

/** The ARN of the secret the service currently uses, as stored in the services table. */
async function secretArnOf(name: string): Promise<string> {
  const record = await registry.get(name);
  if (!record) throw new Error(`service ${name} is not stored`);
  if (!record.secret) throw new Error(`service ${name} has no secret`);
  return record.secret.arn;
}

/** DescribeSecret's DeletedDate (when the deletion was scheduled), undefined while the secret is live. */
async function deletedDateOf(arn: string): Promise<Date | undefined> {
  return (await sm.send(new DescribeSecretCommand({ SecretId: arn }))).DeletedDate;
}

/** How many cached tokens the token cache table holds for the service (all versions and scopes). */
async function cachedTokenCount(name: string): Promise<number> {
  const out = await ddb.send(
    new QueryCommand({
      TableName: h.tables.tokenCacheTable,
      KeyConditionExpression: '#pk = :service',
      ExpressionAttributeNames: { '#pk': TOKEN_CACHE_TABLE.partitionKey },
      ExpressionAttributeValues: { ':service': { S: name } },
      ConsistentRead: true,
      Select: 'COUNT',
    }),
  );
  return out.Count ?? 0;
}

/** Registers a new app (own client id and secret) in the emulator, so a rotation touches no other test. */
function newApp(): { clientId: string; secret: string } {
  const app = { clientId: randomUUID(), secret: `secret-${randomUUID()}` };
  h.emulator.registerApp({ tenantId: h.tenantId, clientId: app.clientId, clientSecrets: [app.secret] });
  return app;
}

/** Creates a secret holding `value` (a hand-made secret: the plain client secret) and returns its ARN. */
async function bringSecret(name: string, value = h.clientSecret): Promise<string> {
  const out = await sm.send(new CreateSecretCommand({ Name: name, SecretString: value }));
  return out.ARN as string;
}

/** A service body that references an existing secret instead of carrying a value. */
function byoBody(name: string, arn: string, config: Record<string, unknown> = {}) {
  const body = h.serviceBody(name, {}, config);
  const { client_secret: _secret, ...rest } = body.config;
  return { ...body, config: { ...rest, client_secret_arn: arn } };
}

describe('GET /api/v2/system/service[/{name}]', () => {
  it('lists every service in the {"resource": [...]} envelope', async () => {
    const name = fresh('list');
    await h.createService(name);
    const res = await h.admin('GET');
    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(['resource']);
    expect(res.body.resource).toContainEqual(withoutSecret(h.serviceBody(name)));
  });

  it('never puts a client secret value in the list', async () => {
    await h.createService(fresh('list'));
    const res = await h.admin('GET');
    expect(res.status).toBe(200);
    expect(res.raw.includes(h.clientSecret)).toBe(false);
    expect(res.raw).not.toContain('"client_secret"');
  });

  it('returns one service with its version as a strong ETag', async () => {
    const name = fresh('get');
    const created = await h.createService(name);
    const res = await h.admin('GET', undefined, { name });
    expect(res.status).toBe(200);
    expect(res.body).toEqual(withoutSecret(h.serviceBody(name)));
    expect(res.headers.etag).toMatch(/^"[^"]+"$/);
    expect(res.headers.etag).toBe(created.headers.etag);
  });

  it('answers 404 for an unknown service', async () => {
    const res = await h.admin('GET', undefined, { name: 'nosuchservice' });
    expect(res.status).toBe(404);
    expectErrorShape(404, res.body);
  });
});

describe('PATCH /api/v2/system/service/{name}', () => {
  it('changes only the fields sent', async () => {
    const name = fresh('patch');
    await h.createService(name);
    const res = await h.admin('PATCH', { description: 'changed' }, { name });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ ...withoutSecret(h.serviceBody(name)), description: 'changed' });
  });

  it('stores the change: GET returns the updated service', async () => {
    const name = fresh('patch');
    await h.createService(name);
    const patched = await h.admin('PATCH', { label: 'New label' }, { name });
    const res = await h.admin('GET', undefined, { name });
    expect(res.body).toEqual(patched.body);
    expect(res.body.label).toBe('New label');
  });

  it('updates label, description and is_active together', async () => {
    const name = fresh('patch');
    await h.createService(name);
    const res = await h.admin('PATCH', { label: 'L', description: 'D', is_active: false }, { name });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ label: 'L', description: 'D', is_active: false });
  });

  it('makes a service deactivated by PATCH refuse tokens with 403', async () => {
    const name = fresh('patch');
    await h.createService(name);
    await h.admin('PATCH', { is_active: false }, { name });
    const res = await h.token('GET', name);
    expect(res.status).toBe(403);
  });

  it('changes one config field and keeps the others', async () => {
    const name = fresh('patch');
    await h.createService(name);
    const res = await h.admin('PATCH', { config: { scopes: 'https://vault.azure.net/.default' } }, { name });
    expect(res.status).toBe(200);
    expect(res.body.config).toEqual({
      ...withoutSecret(h.serviceBody(name)).config,
      scopes: 'https://vault.azure.net/.default',
    });
  });

  it('uses a PATCHed scope for the next token request', async () => {
    const name = fresh('patch');
    await h.createService(name);
    await h.admin('PATCH', { config: { scopes: 'https://vault.azure.net/.default' } }, { name });
    const res = await h.token('GET', name);
    expect(res.status).toBe(200);
    expect(h.emulator.requests.at(-1)?.scope).toBe('https://vault.azure.net/.default');
  });

  it('returns authority_url to the default when PATCHed to null', async () => {
    const name = fresh('patch');
    await h.createService(name);
    const res = await h.admin('PATCH', { config: { authority_url: null } }, { name });
    expect(res.status).toBe(200);
    expect(res.body.config).not.toHaveProperty('authority_url');
    const stored = await h.admin('GET', undefined, { name });
    expect(stored.body.config).not.toHaveProperty('authority_url');
  });

  it('accepts the unchanged name in the body', async () => {
    const name = fresh('patch');
    await h.createService(name);
    const res = await h.admin('PATCH', { name, label: 'same name' }, { name });
    expect(res.status).toBe(200);
  });

  it('refuses a rename with 400 and leaves the service as it was', async () => {
    const name = fresh('patch');
    const created = await h.createService(name);
    const res = await h.admin('PATCH', { name: 'another-name', label: 'x' }, { name });
    expect(res.status).toBe(400);
    expectErrorShape(400, res.body);
    expect(res.body.error.message).toMatch(/^name: /);
    const stored = await h.admin('GET', undefined, { name });
    expect(stored.headers.etag).toBe(created.headers.etag);
    expect((await h.admin('GET', undefined, { name: 'another-name' })).status).toBe(404);
  });

  it('refuses an unknown top-level field with 400 naming it', async () => {
    const name = fresh('patch');
    await h.createService(name);
    const res = await h.admin('PATCH', { colour: 'blue' }, { name });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toBe('colour: unknown field');
  });

  it('refuses an unknown config field with 400 naming it', async () => {
    const name = fresh('patch');
    await h.createService(name);
    const res = await h.admin('PATCH', { config: { secret: 'x' } }, { name });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toBe('config.secret: unknown field');
  });

  it('refuses a patch whose merged result is invalid (scope without /.default) with 400 and changes nothing', async () => {
    const name = fresh('patch');
    const created = await h.createService(name);
    const res = await h.admin('PATCH', { config: { scopes: 'https://graph.microsoft.com' } }, { name });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/^config\.scopes: /);
    const stored = await h.admin('GET', undefined, { name });
    expect(stored.body.config.scopes).toBe('https://graph.microsoft.com/.default');
    expect(stored.headers.etag).toBe(created.headers.etag);
  });

  it('refuses a client_id that is not a GUID with 400 naming config.client_id', async () => {
    const name = fresh('patch');
    await h.createService(name);
    const res = await h.admin('PATCH', { config: { client_id: 'not-a-guid' } }, { name });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/^config\.client_id: /);
  });

  it('refuses a multi-tenant alias as tenant_id with 400 naming config.tenant_id', async () => {
    const name = fresh('patch');
    await h.createService(name);
    const res = await h.admin('PATCH', { config: { tenant_id: 'common' } }, { name });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/^config\.tenant_id: /);
  });

  it('refuses an authority host that is not allowed with 400', async () => {
    const name = fresh('patch');
    await h.createService(name);
    const res = await h.admin(
      'PATCH',
      { config: { authority_url: 'https://evil.example.com/{tenant_id}' } },
      { name },
    );
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain('evil.example.com');
  });

  it('answers 404 for a PATCH of an unknown service', async () => {
    const res = await h.admin('PATCH', { label: 'x' }, { name: 'nosuchservice' });
    expect(res.status).toBe(404);
    expectErrorShape(404, res.body);
  });
});

describe('rotating the client secret with PATCH', () => {
  it('sends the new secret to Entra: the old one fails once Entra rotated it, the PATCHed one works', async () => {
    const app = newApp();
    const name = fresh('rotate');
    await h.createService(name, {}, { client_id: app.clientId, client_secret: app.secret });
    const next = `secret-${randomUUID()}`;
    h.emulator.setClientSecrets(app.clientId, [next]);
    const withOld = await h.token('POST', name);
    expect(withOld.status).toBe(502);
    expect(withOld.body.error.message).toMatch(/^invalid_client: /);

    const patched = await h.admin('PATCH', { config: { client_secret: next } }, { name });
    expect(patched.status).toBe(200);
    const withNew = await h.token('GET', name);
    expect(withNew.status).toBe(200);
    expect(h.emulator.requests.at(-1)?.clientId).toBe(app.clientId);
  });

  it('points the service at a new secret', async () => {
    const app = newApp();
    const name = fresh('rotate');
    await h.createService(name, {}, { client_id: app.clientId, client_secret: app.secret });
    const before = await secretArnOf(name);
    await h.admin('PATCH', { config: { client_secret: `secret-${randomUUID()}` } }, { name });
    const after = await secretArnOf(name);
    expect(after).not.toBe(before);
    expect(await deletedDateOf(after)).toBeUndefined();
  });

  it('schedules the old managed secret for deletion with a recovery window', async () => {
    const app = newApp();
    const name = fresh('rotate');
    await h.createService(name, {}, { client_id: app.clientId, client_secret: app.secret });
    const old = await secretArnOf(name);
    await h.admin('PATCH', { config: { client_secret: `secret-${randomUUID()}` } }, { name });
    // DescribeSecret still answers (not force-deleted) and shows when the deletion was scheduled.
    expect(await deletedDateOf(old)).toBeInstanceOf(Date);
  });

  it('never returns the new secret in the PATCH response', async () => {
    const name = fresh('rotate');
    await h.createService(name);
    const next = `secret-${randomUUID()}`;
    const res = await h.admin('PATCH', { config: { client_secret: next } }, { name });
    expect(res.status).toBe(200);
    expect(res.raw.includes(next)).toBe(false);
    expect(res.raw).not.toContain('client_secret');
  });

  it('refuses client_secret together with client_secret_arn with 400', async () => {
    const name = fresh('rotate');
    await h.createService(name);
    const arn = await bringSecret(`${PREFIX}both-${randomUUID()}`);
    const res = await h.admin('PATCH', { config: { client_secret: 'x', client_secret_arn: arn } }, { name });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/^config\.client_secret: /);
  });
});

describe('instant invalidation of cached tokens', () => {
  it('asks Entra again after a PATCH that only changes the label', async () => {
    const name = fresh('inval');
    await h.createService(name);
    const first = await h.token('GET', name);
    await h.admin('PATCH', { label: 'only the label' }, { name });
    const before = h.emulator.tokenRequestCount;
    const next = await h.token('GET', name);
    expect(h.emulator.tokenRequestCount - before).toBe(1);
    expect(next.body.access_token).not.toBe(first.body.access_token);
  });

  it('serves from the cache again after the first token of the new version', async () => {
    const name = fresh('inval');
    await h.createService(name);
    await h.token('GET', name);
    await h.admin('PATCH', { description: 'changed' }, { name });
    await h.token('GET', name);
    const before = h.emulator.tokenRequestCount;
    await h.token('GET', name);
    expect(h.emulator.tokenRequestCount).toBe(before);
  });

  it('removes the old version’s cached tokens from the table', async () => {
    const name = fresh('inval');
    await h.createService(name);
    await h.token('GET', name);
    expect(await cachedTokenCount(name)).toBe(1);
    await h.admin('PATCH', { label: 'changed' }, { name });
    expect(await cachedTokenCount(name)).toBe(0);
  });
});

describe('invalidation seen by a second broker process sharing the tables', () => {
  let b: BrokerProcess;
  // B keeps what it served in memory for at most the documented bound (lib/token-memory.ts); the harness's token
  // handler runs with the memory tier off.
  const memoryBoundPassed = () => delay(DEFAULT_MEMORY_BOUND_MS + 50);

  beforeAll(async () => {
    b = await BrokerProcess.start({ env: sameDeploymentAs(h) });
  });
  afterAll(async () => {
    await b?.stop();
  });

  it('shares the cache: a token fetched by one broker is served by the other without asking Entra', async () => {
    const name = fresh('shared');
    await h.createService(name);
    const fromB = await b.token('GET', name);
    expect(fromB.status).toBe(200);
    const before = h.emulator.tokenRequestCount;
    const fromA = await h.token('GET', name);
    expect(h.emulator.tokenRequestCount).toBe(before);
    expect(fromA.body.access_token).toBe(fromB.body.access_token);
  });

  it('makes broker B ask Entra again on its next GET after broker A PATCHes the service', async () => {
    const name = fresh('shared');
    await h.createService(name);
    await b.token('GET', name);
    const cached = h.emulator.tokenRequestCount;
    await b.token('GET', name);
    expect(h.emulator.tokenRequestCount).toBe(cached);

    const patched = await h.admin('PATCH', { label: 'changed by A' }, { name });
    expect(patched.status).toBe(200);
    await memoryBoundPassed();
    const res = await b.token('GET', name);
    expect(res.status).toBe(200);
    expect(h.emulator.tokenRequestCount - cached).toBe(1);
  });

  it('makes broker B use the secret broker A rotated', async () => {
    const app = newApp();
    const name = fresh('shared');
    await h.createService(name, {}, { client_id: app.clientId, client_secret: app.secret });
    await b.token('GET', name);
    const next = `secret-${randomUUID()}`;
    h.emulator.setClientSecrets(app.clientId, [next]);
    await h.admin('PATCH', { config: { client_secret: next } }, { name });
    await memoryBoundPassed();
    const before = h.emulator.tokenRequestCount;
    const res = await b.token('GET', name);
    expect(res.status).toBe(200);
    expect(h.emulator.tokenRequestCount - before).toBe(1);
  });

  it('makes broker B answer 404 once broker A deleted the service', async () => {
    const name = fresh('shared');
    await h.createService(name);
    await b.token('GET', name);
    await h.admin('DELETE', undefined, { name });
    await memoryBoundPassed();
    const res = await b.token('GET', name);
    expect(res.status).toBe(404);
  });

  it('shows broker A’s PATCH in broker B’s GET of the service, with the same ETag', async () => {
    const name = fresh('shared');
    await h.createService(name);
    const patched = await h.admin('PATCH', { label: 'seen by B' }, { name });
    const res = await b.request('GET', `/api/v2/system/service/${name}`);
    expect(res.status).toBe(200);
    expect(res.body.label).toBe('seen by B');
    expect(res.headers.etag).toBe(patched.headers.etag);
  });
});

describe('optimistic concurrency (ETag / If-Match)', () => {
  it('answers 412 for a PATCH whose If-Match names an outdated version, and changes nothing', async () => {
    const name = fresh('occ');
    const created = await h.createService(name);
    const moved = await h.admin('PATCH', { label: 'first' }, { name });
    const res = await h.admin('PATCH', { label: 'stale' }, { name, headers: ifMatch(created.headers.etag) });
    expect(res.status).toBe(412);
    expectErrorShape(412, res.body);
    const stored = await h.admin('GET', undefined, { name });
    expect(stored.body.label).toBe('first');
    expect(stored.headers.etag).toBe(moved.headers.etag);
  });

  it('applies a PATCH whose If-Match is current and answers 200 with a new ETag', async () => {
    const name = fresh('occ');
    const created = await h.createService(name);
    const res = await h.admin('PATCH', { label: 'fresh' }, { name, headers: ifMatch(created.headers.etag) });
    expect(res.status).toBe(200);
    expect(res.headers.etag).toMatch(/^"[^"]+"$/);
    expect(res.headers.etag).not.toBe(created.headers.etag);
    expect((await h.admin('GET', undefined, { name })).headers.etag).toBe(res.headers.etag);
  });

  it('applies a PATCH with If-Match: * whatever the version', async () => {
    const name = fresh('occ');
    await h.createService(name);
    const res = await h.admin('PATCH', { label: 'any' }, { name, headers: { 'If-Match': '*' } });
    expect(res.status).toBe(200);
  });

  it('lets exactly one of two concurrent PATCHes with the same If-Match win; the other gets 409 or 412', async () => {
    const name = fresh('occ');
    const created = await h.createService(name);
    const headers = ifMatch(created.headers.etag);
    const results = await Promise.all([
      h.admin('PATCH', { label: 'A', description: 'from A' }, { name, headers }),
      h.admin('PATCH', { label: 'B', description: 'from B' }, { name, headers }),
    ]);
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409 || s === 412)).toHaveLength(1);
  });

  it('keeps the winner of two concurrent PATCHes whole, never a mix of both', async () => {
    const name = fresh('occ');
    const created = await h.createService(name);
    const headers = ifMatch(created.headers.etag);
    const results = await Promise.all([
      h.admin('PATCH', { label: 'A', description: 'from A' }, { name, headers }),
      h.admin('PATCH', { label: 'B', description: 'from B' }, { name, headers }),
    ]);
    const winner = results.find((r) => r.status === 200);
    const stored = await h.admin('GET', undefined, { name });
    expect(stored.body).toEqual(winner?.body);
    expect([
      { label: 'A', description: 'from A' },
      { label: 'B', description: 'from B' },
    ]).toContainEqual({ label: stored.body.label, description: stored.body.description });
    expect(stored.headers.etag).toBe(winner?.headers.etag);
  });

  it('leaves no secret behind for the loser of two concurrent rotations', async () => {
    const name = fresh('occ');
    const created = await h.createService(name);
    const headers = ifMatch(created.headers.etag);
    await Promise.all([
      h.admin('PATCH', { config: { client_secret: `secret-${randomUUID()}` } }, { name, headers }),
      h.admin('PATCH', { config: { client_secret: `secret-${randomUUID()}` } }, { name, headers }),
    ]);
    const live = (await listAllSecrets(sm))
      .filter((s) => (s.Name ?? '').startsWith(`${PREFIX}${name}/`) && s.DeletedDate === undefined)
      .map((s) => s.ARN);
    expect(live).toEqual([await secretArnOf(name)]);
  });

  it('creates no secret for a rotation refused with 412', async () => {
    const name = fresh('occ');
    const created = await h.createService(name);
    await h.admin('PATCH', { label: 'moved on' }, { name });
    const res = await h.admin(
      'PATCH',
      { config: { client_secret: `secret-${randomUUID()}` } },
      { name, headers: ifMatch(created.headers.etag) },
    );
    expect(res.status).toBe(412);
    const names = (await listAllSecrets(sm)).filter((s) => (s.Name ?? '').startsWith(`${PREFIX}${name}/`));
    expect(names).toHaveLength(1);
  });

  it('never resurrects a service when a PATCH races a DELETE with the same If-Match', async () => {
    const name = fresh('occ');
    const created = await h.createService(name);
    const headers = ifMatch(created.headers.etag);
    const [deleted, patched] = await Promise.all([
      h.admin('DELETE', undefined, { name, headers }),
      h.admin('PATCH', { label: 'racing' }, { name, headers }),
    ]);
    const stored = await h.admin('GET', undefined, { name });
    if (deleted.status === 200) {
      expect([404, 409, 412]).toContain(patched.status);
      expect(stored.status).toBe(404);
    } else {
      expect([409, 412]).toContain(deleted.status);
      expect(patched.status).toBe(200);
      expect(stored.body.label).toBe('racing');
    }
  });

  it('answers 412 for a DELETE whose If-Match is outdated and keeps the service', async () => {
    const name = fresh('occ');
    const created = await h.createService(name);
    await h.admin('PATCH', { label: 'moved on' }, { name });
    const res = await h.admin('DELETE', undefined, { name, headers: ifMatch(created.headers.etag) });
    expect(res.status).toBe(412);
    expect((await h.admin('GET', undefined, { name })).status).toBe(200);
  });

  it('deletes when the DELETE’s If-Match is current', async () => {
    const name = fresh('occ');
    const created = await h.createService(name);
    const res = await h.admin('DELETE', undefined, { name, headers: ifMatch(created.headers.etag) });
    expect(res.status).toBe(200);
  });
});

describe('DELETE /api/v2/system/service/{name}', () => {
  it('returns the deleted service, without its secret', async () => {
    const name = fresh('del');
    const created = await h.createService(name);
    const res = await h.admin('DELETE', undefined, { name });
    expect(res.status).toBe(200);
    expect(res.body).toEqual(withoutSecret(h.serviceBody(name)));
    expect(res.headers.etag).toBe(created.headers.etag);
    expect(res.raw.includes(h.clientSecret)).toBe(false);
  });

  it('makes GET of the service answer 404 afterwards', async () => {
    const name = fresh('del');
    await h.createService(name);
    await h.admin('DELETE', undefined, { name });
    expect((await h.admin('GET', undefined, { name })).status).toBe(404);
  });

  it('makes token requests for the service answer 404 afterwards', async () => {
    const name = fresh('del');
    await h.createService(name);
    await h.token('GET', name);
    await h.admin('DELETE', undefined, { name });
    expect((await h.token('GET', name)).status).toBe(404);
  });

  it('removes the service’s cached tokens', async () => {
    const name = fresh('del');
    await h.createService(
      name,
      {},
      { scopes: 'https://graph.microsoft.com/.default https://vault.azure.net/.default' },
    );
    await h.token('GET', name);
    await h.token('GET', name, { scope: 'https://vault.azure.net/.default' });
    expect(await cachedTokenCount(name)).toBe(2);
    await h.admin('DELETE', undefined, { name });
    expect(await cachedTokenCount(name)).toBe(0);
  });

  it('makes a re-created service with the same name ask Entra again', async () => {
    const name = fresh('del');
    await h.createService(name);
    const old = await h.token('GET', name);
    await h.admin('DELETE', undefined, { name });
    await h.createService(name);
    const before = h.emulator.tokenRequestCount;
    const res = await h.token('GET', name);
    expect(res.status).toBe(200);
    expect(h.emulator.tokenRequestCount - before).toBe(1);
    expect(res.body.access_token).not.toBe(old.body.access_token);
  });

  it('schedules the managed secret for deletion rather than deleting it at once', async () => {
    const name = fresh('del');
    await h.createService(name);
    const arn = await secretArnOf(name);
    await h.admin('DELETE', undefined, { name });
    expect(await deletedDateOf(arn)).toBeInstanceOf(Date);
  });

  it('leaves the managed secret restorable during its recovery window', async () => {
    const name = fresh('del');
    await h.createService(name);
    const arn = await secretArnOf(name);
    await h.admin('DELETE', undefined, { name });
    await sm.send(new RestoreSecretCommand({ SecretId: arn }));
    expect(await deletedDateOf(arn)).toBeUndefined();
  });

  it('answers 404 for an unknown service', async () => {
    const res = await h.admin('DELETE', undefined, { name: 'nosuchservice' });
    expect(res.status).toBe(404);
    expectErrorShape(404, res.body);
  });
});

describe('bring your own secret (config.client_secret_arn)', () => {
  it('creates a service that references a secret under the prefix (201) and shows its ARN', async () => {
    const name = fresh('byo');
    const arn = await bringSecret(`${PREFIX}brought/${name}`);
    const res = await h.admin('POST', byoBody(name, arn));
    expect(res.status).toBe(201);
    expect(res.body.config.client_secret_arn).toBe(arn);
    expect(res.body.config).not.toHaveProperty('client_secret');
  });

  it('gets tokens with the brought secret', async () => {
    const app = newApp();
    const name = fresh('byo');
    const arn = await bringSecret(`${PREFIX}brought/${name}`, app.secret);
    await h.admin('POST', byoBody(name, arn, { client_id: app.clientId }));
    const res = await h.token('GET', name);
    expect(res.status).toBe(200);
    expect(h.emulator.requests.at(-1)?.clientId).toBe(app.clientId);
  });

  it('reads a brought secret stored in the broker’s JSON form too', async () => {
    const name = fresh('byo');
    const arn = await bringSecret(
      `${PREFIX}brought/${name}`,
      JSON.stringify({ client_secret: h.clientSecret }),
    );
    await h.admin('POST', byoBody(name, arn));
    expect((await h.token('GET', name)).status).toBe(200);
  });

  it('never copies the brought secret: the service keeps pointing at it', async () => {
    const name = fresh('byo');
    const arn = await bringSecret(`${PREFIX}brought/${name}`);
    await h.admin('POST', byoBody(name, arn));
    expect(await secretArnOf(name)).toBe(arn);
  });

  it('creates no managed secret for a service with a brought secret', async () => {
    const name = fresh('byo');
    const arn = await bringSecret(`${PREFIX}brought/${name}`);
    await h.admin('POST', byoBody(name, arn));
    expect(await secretNamesOfService(sm, name)).toEqual([`${PREFIX}brought/${name}`]);
  });

  it('refuses client_secret together with client_secret_arn with 400', async () => {
    const name = fresh('byo');
    const arn = await bringSecret(`${PREFIX}brought/${name}`);
    const body = h.serviceBody(name, {}, { client_secret_arn: arn });
    const res = await h.admin('POST', body);
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/^config\.client_secret: /);
  });

  it('refuses a secret outside the prefix that is not allow-listed with 400', async () => {
    const name = fresh('byo');
    const arn = await bringSecret(`other-team/${name}`);
    const res = await h.admin('POST', byoBody(name, arn));
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain('TOKEN_BROKER_ALLOWED_SECRET_ARNS');
    expect((await h.admin('GET', undefined, { name })).status).toBe(404);
  });

  it('refuses an ARN under the prefix that names no secret with 400', async () => {
    const name = fresh('byo');
    const arn = `arn:aws:secretsmanager:us-east-1:000000000000:secret:${PREFIX}missing/${name}-AbCdEf`;
    const res = await h.admin('POST', byoBody(name, arn));
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/^config\.client_secret_arn: /);
  });

  it('refuses a secret that is scheduled for deletion with 400', async () => {
    const name = fresh('byo');
    const arn = await bringSecret(`${PREFIX}brought/${name}`);
    await sm.send(new DeleteSecretCommand({ SecretId: arn, RecoveryWindowInDays: 7 }));
    const res = await h.admin('POST', byoBody(name, arn));
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/^config\.client_secret_arn: /);
  });

  it('shows the ARN of a brought secret in the list', async () => {
    const name = fresh('byo');
    const arn = await bringSecret(`${PREFIX}brought/${name}`);
    await h.admin('POST', byoBody(name, arn));
    const res = await h.admin('GET');
    const listed = res.body.resource.find((s: { name: string }) => s.name === name);
    expect(listed.config.client_secret_arn).toBe(arn);
    expect(res.raw.includes(h.clientSecret)).toBe(false);
  });

  it('does not delete the brought secret when the service is deleted', async () => {
    const name = fresh('byo');
    const arn = await bringSecret(`${PREFIX}brought/${name}`);
    await h.admin('POST', byoBody(name, arn));
    const res = await h.admin('DELETE', undefined, { name });
    expect(res.status).toBe(200);
    expect(await deletedDateOf(arn)).toBeUndefined();
    const value = await sm.send(new GetSecretValueCommand({ SecretId: arn }));
    expect(value.SecretString === h.clientSecret).toBe(true);
  });

  it('does not delete the brought secret when a PATCH switches the service to a managed secret', async () => {
    const name = fresh('byo');
    const arn = await bringSecret(`${PREFIX}brought/${name}`);
    await h.admin('POST', byoBody(name, arn));
    const res = await h.admin('PATCH', { config: { client_secret: h.clientSecret } }, { name });
    expect(res.status).toBe(200);
    expect(res.body.config).not.toHaveProperty('client_secret_arn');
    expect(await deletedDateOf(arn)).toBeUndefined();
    expect(await secretArnOf(name)).not.toBe(arn);
  });

  it('schedules the managed secret for deletion when a PATCH switches the service to a brought one', async () => {
    const name = fresh('byo');
    await h.createService(name);
    const managed = await secretArnOf(name);
    const arn = await bringSecret(`${PREFIX}brought/${name}`);
    const res = await h.admin('PATCH', { config: { client_secret_arn: arn } }, { name });
    expect(res.status).toBe(200);
    expect(res.body.config.client_secret_arn).toBe(arn);
    expect(await deletedDateOf(managed)).toBeInstanceOf(Date);
  });

  it('keeps the brought secret through a PATCH that sends no secret field', async () => {
    const name = fresh('byo');
    const arn = await bringSecret(`${PREFIX}brought/${name}`);
    await h.admin('POST', byoBody(name, arn));
    const res = await h.admin('PATCH', { label: 'relabelled' }, { name });
    expect(res.status).toBe(200);
    expect(res.body.config.client_secret_arn).toBe(arn);
    expect(await secretArnOf(name)).toBe(arn);
  });
});

describe('a secret outside the prefix listed in TOKEN_BROKER_ALLOWED_SECRET_ARNS', () => {
  let listed: BrokerProcess;
  let arn: string;

  beforeAll(async () => {
    arn = await bringSecret(`other-team/entra-${randomUUID()}`);
    listed = await BrokerProcess.start({
      env: sameDeploymentAs(h, { TOKEN_BROKER_ALLOWED_SECRET_ARNS: arn }),
    });
  });
  afterAll(async () => {
    await listed?.stop();
  });

  it('is accepted by a broker that lists it (201)', async () => {
    const name = fresh('allowed');
    const res = await listed.request('POST', '/api/v2/system/service', { body: byoBody(name, arn) });
    expect(res.status).toBe(201);
    expect(res.body.config.client_secret_arn).toBe(arn);
  });

  it('serves tokens with it', async () => {
    const name = fresh('allowed');
    await listed.request('POST', '/api/v2/system/service', { body: byoBody(name, arn) });
    const res = await listed.token('GET', name);
    expect(res.status).toBe(200);
  });

  it('is still refused by a broker that does not list it', async () => {
    const res = await h.admin('POST', byoBody(fresh('allowed'), arn));
    expect(res.status).toBe(400);
  });

  it('does not allow another secret outside the prefix', async () => {
    const other = await bringSecret(`other-team/entra-${randomUUID()}`);
    const res = await listed.request('POST', '/api/v2/system/service', {
      body: byoBody(fresh('allowed'), other),
    });
    expect(res.status).toBe(400);
  });
});

describe('service names', () => {
  it.each(['system', 'api_docs'])('refuses the reserved name %s with 400', async (reserved) => {
    const res = await h.admin('POST', h.serviceBody(reserved));
    expect(res.status).toBe(400);
    expectErrorShape(400, res.body);
    expect(res.body.error.message).toBe('name: is a reserved name');
  });
});

describe('GET /api/v2/api_docs', () => {
  const docs = () =>
    h.raw(
      'admin',
      apiGatewayEvent({ method: 'GET', resource: '/api/v2/api_docs', path: '/api/v2/api_docs' }),
    );

  it('returns the OpenAPI 3.1 document', async () => {
    const res = await docs();
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
  });

  it('returns exactly the committed openapi.json', async () => {
    const committed = JSON.parse(readFileSync(join(__dirname, '..', '..', 'openapi.json'), 'utf8'));
    const res = await docs();
    expect(res.body).toEqual(committed);
  });

  it('answers 405 with Allow: GET for a POST', async () => {
    const res = await h.raw(
      'admin',
      apiGatewayEvent({ method: 'POST', resource: '/api/v2/api_docs', path: '/api/v2/api_docs', body: {} }),
    );
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('GET');
  });
});

describe('ServiceAdministration.declare (configuration as code)', () => {
  let admin: ServiceAdministration;

  beforeAll(() => {
    admin = new ServiceAdministration({
      registry,
      secrets: new SecretsManagerSecretStore({ client: secretStore }),
      cache: new DynamoDbTokenCache({ client: store, tableName: h.tables.tokenCacheTable }),
      authority: new AuthorityPolicy(new URL(h.emulator.url).host),
      secretReferences: new SecretReferencePolicy(PREFIX),
      logger: new Logger({ serviceName: 'declare-test', logLevel: 'SILENT' }),
      secretPrefix: PREFIX,
    });
  });

  async function declared(name: string) {
    const arn = await bringSecret(`${PREFIX}declared/${name}`);
    return byoBody(name, arn);
  }

  it("creates a missing service and answers 'created'", async () => {
    const body = await declared(fresh('decl'));
    expect(await admin.declare(body)).toBe('created');
    const res = await h.admin('GET', undefined, { name: body.name });
    expect(res.status).toBe(200);
    expect(res.body).toEqual(body);
  });

  it("answers 'unchanged' for an identical declaration with client_secret_arn and keeps the version", async () => {
    const body = await declared(fresh('decl'));
    await admin.declare(body);
    const before = await h.admin('GET', undefined, { name: body.name });
    expect(await admin.declare(body)).toBe('unchanged');
    const after = await h.admin('GET', undefined, { name: body.name });
    expect(after.headers.etag).toBe(before.headers.etag);
  });

  it("keeps the cached tokens of a service declared 'unchanged'", async () => {
    const body = await declared(fresh('decl'));
    await admin.declare(body);
    await h.token('GET', body.name);
    await admin.declare(body);
    const before = h.emulator.tokenRequestCount;
    await h.token('GET', body.name);
    expect(h.emulator.tokenRequestCount).toBe(before);
  });

  it("answers 'updated' and applies the declaration when a top-level field differs", async () => {
    const body = await declared(fresh('decl'));
    await admin.declare(body);
    expect(await admin.declare({ ...body, label: 'Declared anew' })).toBe('updated');
    const res = await h.admin('GET', undefined, { name: body.name });
    expect(res.body.label).toBe('Declared anew');
  });

  it("answers 'updated' when a config field differs", async () => {
    const body = await declared(fresh('decl'));
    await admin.declare(body);
    const changed = { ...body, config: { ...body.config, scopes: 'https://vault.azure.net/.default' } };
    expect(await admin.declare(changed)).toBe('updated');
    const res = await h.admin('GET', undefined, { name: body.name });
    expect(res.body).toEqual(changed);
  });

  it("answers 'updated' when the declared secret ARN differs, and switches to it", async () => {
    const body = await declared(fresh('decl'));
    await admin.declare(body);
    const other = await bringSecret(`${PREFIX}declared/${body.name}-next`);
    expect(await admin.declare({ ...body, config: { ...body.config, client_secret_arn: other } })).toBe(
      'updated',
    );
    expect(await secretArnOf(body.name)).toBe(other);
  });

  it('returns fields left out of a later declaration to their defaults', async () => {
    const body = await declared(fresh('decl'));
    await admin.declare(body);
    const { description: _d, config, ...rest } = body;
    const { authority_url: _a, ...bare } = config;
    expect(await admin.declare({ ...rest, config: bare })).toBe('updated');
    const res = await h.admin('GET', undefined, { name: body.name });
    expect(res.body.description).toBe('');
    expect(res.body.config).not.toHaveProperty('authority_url');
  });

  it("always answers 'updated' for a declaration with a client_secret value (it cannot be compared)", async () => {
    const name = fresh('decl');
    const body = h.serviceBody(name);
    expect(await admin.declare(body)).toBe('created');
    expect(await admin.declare(body)).toBe('updated');
  });

  it('refuses an invalid declaration with a ValidationError and stores nothing', async () => {
    const name = fresh('decl');
    const body = h.serviceBody(name, {}, { scopes: 'not-a-scope' });
    await expect(admin.declare(body)).rejects.toBeInstanceOf(ValidationError);
    expect((await h.admin('GET', undefined, { name })).status).toBe(404);
  });
});
