/**
 * `credential_type: kms_certificate` through the production handlers: the admin function creates a KMS key in the
 * local KMS (or uses the one given), issues a self-signed certificate through kms:Sign, rotates it, and schedules
 * replaced keys for deletion; the token function signs client assertions with kms:Sign, which the Entra emulator
 * verifies against the certificates registered on the app. Everything over real sockets; no route, listing or
 * log ever carries the private keys, which exist only in the local KMS's files.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  CreateKeyCommand,
  DescribeKeyCommand,
  KMSClient,
  ListResourceTagsCommand,
} from '@aws-sdk/client-kms';
import { certificateExpiries } from '../../lib/certificate-expiry';
import { KMS_KEY_DELETION_WINDOW_DAYS } from '../../lib/kms-certificates';
import type { ServiceRecord } from '../../lib/service-config';
import { DynamoDbServiceRegistry } from '../../lib/service-registry';
import { apiGatewayEvent } from '../fixtures/apigw-event';
import { brokerDynamoDb } from '../fixtures/broker-aws';
import { BrokerHarness, type CallResult } from '../fixtures/broker-harness';
import { dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { registerSensitiveValue } from '../fixtures/log-redaction';

const DAY_MS = 86_400_000;
let h: BrokerHarness;
let kms: KMSClient;

beforeAll(async () => {
  h = await BrokerHarness.start();
  kms = new KMSClient({
    endpoint: h.kms.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
});

afterAll(async () => {
  await registerLocalPrivateKeys();
  kms.destroy();
  await h.close();
});

/** The private keys the local KMS holds (never readable through the KMS API): none may reach a log. */
async function registerLocalPrivateKeys(): Promise<string[]> {
  const directory = path.join(h.dataDir, 'kms');
  const lines: string[] = [];
  for (const file of (await readdir(directory)).filter((f) => f.startsWith('asym-'))) {
    const { privateKeyPem } = JSON.parse(await readFile(path.join(directory, file), 'utf8'));
    // One line of the base64 body: JSON logs would escape the PEM's line breaks.
    const line = (privateKeyPem as string).split('\n')[5] as string;
    registerSensitiveValue('private key', line);
    lines.push(line);
  }
  return lines;
}

function kmsBody(name: string, config: Record<string, unknown> = {}) {
  return h.serviceBody(name, {}, { client_secret: undefined, credential_type: 'kms_certificate', ...config });
}

function certificateRoute(method: 'GET' | 'POST', name: string, headers?: Record<string, string>) {
  return h.raw(
    'admin',
    apiGatewayEvent({
      method,
      resource: '/api/v2/system/service/{name}/certificate',
      path: `/api/v2/system/service/${name}/certificate`,
      pathParameters: { name },
      headers,
    }),
  );
}

async function keyState(keyArn: string) {
  const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: keyArn }));
  return { state: KeyMetadata?.KeyState, deletionDate: KeyMetadata?.DeletionDate };
}

/** The KMS key ARN of each asymmetric key file in the local KMS. */
async function localKeyArns(): Promise<string[]> {
  const directory = path.join(h.dataDir, 'kms');
  const files = (await readdir(directory)).filter((f) => f.startsWith('asym-'));
  return Promise.all(
    files.map(async (f) => JSON.parse(await readFile(path.join(directory, f), 'utf8')).arn as string),
  );
}

/** The active key of a service, as stored (the API shows only the key the administrator brought). */
async function storedKms(name: string) {
  const { DynamoDBClient, GetItemCommand } = await import('@aws-sdk/client-dynamodb');
  const client = new DynamoDBClient({});
  try {
    const { Item } = await client.send(
      new GetItemCommand({ TableName: h.tables.servicesTable, Key: { name: { S: name } } }),
    );
    const m = Item?.kms?.M;
    return {
      active: m?.active?.M?.key_arn?.S as string,
      next: m?.next?.M?.key_arn?.S,
    };
  } finally {
    client.destroy();
  }
}

const thumbprintOf = (pem: string) =>
  createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url');

/** Makes a refused service ask Entra again (a PATCH ends the refusal cool-down, as the README says). */
async function touch(name: string): Promise<void> {
  const patched = await h.admin('PATCH', { description: `touched ${Date.now()}` }, { name });
  expect(patched.status).toBe(200);
}

function expectNoPrivateMaterial(...results: CallResult[]): void {
  for (const r of results) {
    expect(r.raw).not.toContain('PRIVATE KEY');
    expect(r.raw).not.toContain('private_key');
  }
}

describe('creating a kms_certificate service', () => {
  let created: CallResult;

  beforeAll(async () => {
    created = await h.admin('POST', kmsBody('kms-graph', { certificate_validity_days: 30 }));
  });

  it('answers 201 with the certificate it issued: CN = the service, validity as asked, thumbprint of its DER', () => {
    expect(created.status).toBe(201);
    const { config } = created.body;
    expect(config).toMatchObject({
      credential_type: 'kms_certificate',
      key_spec: 'RSA_2048',
      certificate_validity_days: 30,
    });
    const certificate = new X509Certificate(config.certificate);
    expect(certificate.subject).toBe('CN=kms-graph');
    expect(config.certificate_thumbprint_sha256).toBe(thumbprintOf(config.certificate));
    expect(config.certificate_not_after).toBe(new Date(certificate.validTo).toISOString());
    const validity = Date.parse(certificate.validTo) - Date.parse(certificate.validFrom);
    expect(Math.round(validity / DAY_MS)).toBe(30);
    expect(config).not.toHaveProperty('kms_key_arn');
  });

  it('creates an RSA SIGN_VERIFY key in KMS tagged for the service, whose public key the certificate carries', async () => {
    const { active } = await storedKms('kms-graph');
    const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: active }));
    expect(KeyMetadata).toMatchObject({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY', KeyState: 'Enabled' });
    const { Tags } = await kms.send(new ListResourceTagsCommand({ KeyId: active }));
    // The harness's broker runs with the default instance id (TOKEN_BROKER_INSTANCE_ID).
    expect(Tags).toEqual(
      expect.arrayContaining([
        { TagKey: 'token-broker:service', TagValue: 'kms-graph' },
        { TagKey: 'token-broker:broker', TagValue: 'token-broker-local' },
      ]),
    );
    const certificate = new X509Certificate(created.body.config.certificate);
    expect(certificate.verify(certificate.publicKey)).toBe(true);
  });

  it('shows the same public facts in GET and in the listing, and never private material', async () => {
    const read = await h.admin('GET', undefined, { name: 'kms-graph' });
    const list = await h.admin('GET');
    const listed = list.body.resource.find((s: { name: string }) => s.name === 'kms-graph');
    for (const view of [read.body, listed]) {
      expect(view.config.certificate_thumbprint_sha256).toBe(
        created.body.config.certificate_thumbprint_sha256,
      );
      expect(view.config.certificate).toBe(created.body.config.certificate);
    }
    expectNoPrivateMaterial(created, read, list);
    for (const line of await registerLocalPrivateKeys()) {
      for (const r of [created, read, list]) expect(r.raw).not.toContain(line);
    }
  });

  it('gives the certificate-expiry gauge the certificate’s days left, from the stored record', async () => {
    const store = brokerDynamoDb(dynamoDbLocalEndpoint());
    try {
      const registry = new DynamoDbServiceRegistry({ client: store, tableName: h.tables.servicesTable });
      const record = await registry.get('kms-graph');
      const notAfter = created.body.config.certificate_not_after as string;
      expect(certificateExpiries([record as ServiceRecord], Date.parse(notAfter) - 29.5 * DAY_MS)).toEqual([
        { service: 'kms-graph', notAfter, daysLeft: 29 },
      ]);
    } finally {
      store.destroy();
    }
  });

  it('answers the certificate as application/x-pem-file at GET .../certificate', async () => {
    const result = await certificateRoute('GET', 'kms-graph');
    expect(result.status).toBe(200);
    expect(result.headers['content-type']).toBe('application/x-pem-file');
    expect(result.raw.trim()).toBe(created.body.config.certificate);
    expectNoPrivateMaterial(result);
  });

  it('answers 502 with AADSTS700027 naming the thumbprint until the certificate is registered, then tokens', async () => {
    const refused = await h.token('GET', 'kms-graph');
    expect(refused.status).toBe(502);
    expect(refused.body.error.message).toMatch(/^AADSTS700027: Entra did not accept the client assertion/);
    expect(refused.body.error.message).toContain(created.body.config.certificate_thumbprint_sha256);

    h.emulator.addCertificate(h.clientId, { pem: (await certificateRoute('GET', 'kms-graph')).raw });
    await touch('kms-graph');
    const token = await h.token('GET', 'kms-graph');
    expect(token.status).toBe(200);
    expect(h.emulator.requests.at(-1)?.credential).toBe('client_assertion');
  });
});

describe('rotation', () => {
  const name = 'kms-rotate';
  let first: string;

  beforeAll(async () => {
    const created = await h.admin('POST', kmsBody(name, { key_spec: 'RSA_3072' }));
    expect(created.status).toBe(201);
    first = created.body.config.certificate_thumbprint_sha256;
    h.emulator.addCertificate(h.clientId, { pem: created.body.config.certificate });
  });

  it('issues the next certificate for a new key while the active one keeps signing', async () => {
    const before = await storedKms(name);
    const issued = await certificateRoute('POST', name);
    expect(issued.status).toBe(201);
    expect(issued.headers.etag).toMatch(/^".+"$/);
    expect(issued.body.certificate_thumbprint_sha256).toBe(thumbprintOf(issued.body.certificate));
    expect(issued.body.certificate_thumbprint_sha256).not.toBe(first);
    expectNoPrivateMaterial(issued);

    const after = await storedKms(name);
    expect(after.active).toBe(before.active);
    expect(after.next).toBeDefined();
    expect(after.next).not.toBe(before.active);
    expect((await kms.send(new DescribeKeyCommand({ KeyId: after.next }))).KeyMetadata?.KeySpec).toBe(
      'RSA_3072',
    );

    const read = await h.admin('GET', undefined, { name });
    expect(read.body.config.certificate_thumbprint_sha256).toBe(first);
    expect(read.body.config.next_certificate_thumbprint_sha256).toBe(
      issued.body.certificate_thumbprint_sha256,
    );
    // Only the first certificate is registered: a token proves the active key still signs.
    expect((await h.token('POST', name)).status).toBe(200);
  });

  it('replaces a pending certificate with a second POST and schedules its key for deletion', async () => {
    const pending = (await storedKms(name)).next as string;
    const issued = await certificateRoute('POST', name);
    expect(issued.status).toBe(201);
    expect((await storedKms(name)).next).not.toBe(pending);
    expect((await keyState(pending)).state).toBe('PendingDeletion');
  });

  it('refuses an unknown thumbprint as active_certificate (400 naming the field)', async () => {
    const result = await h.admin('PATCH', { config: { active_certificate: 'not-a-thumbprint' } }, { name });
    expect(result.status).toBe(400);
    expect(result.body.error.message).toMatch(/^config\.active_certificate: no certificate of this service/);
  });

  it('switches to the pending certificate; the old key is scheduled for deletion (7 days) and tokens keep coming', async () => {
    const before = await storedKms(name);
    const read = await h.admin('GET', undefined, { name });
    const next = read.body.config.next_certificate_thumbprint_sha256 as string;
    h.emulator.addCertificate(h.clientId, { pem: read.body.config.next_certificate });

    const patched = await h.admin('PATCH', { config: { active_certificate: next } }, { name });
    expect(patched.status).toBe(200);
    expect(patched.body.config.certificate_thumbprint_sha256).toBe(next);
    expect(patched.body.config).not.toHaveProperty('next_certificate');
    expect((await storedKms(name)).active).toBe(before.next);

    const old = await keyState(before.active);
    expect(old.state).toBe('PendingDeletion');
    const days = ((old.deletionDate as Date).getTime() - Date.now()) / DAY_MS;
    expect(Math.round(days)).toBe(KMS_KEY_DELETION_WINDOW_DAYS);
    // The old key can no longer sign: a token now proves the new one does.
    const token = await h.token('POST', name);
    expect(token.status).toBe(200);
    expect((await certificateRoute('GET', name)).raw.trim()).toBe(read.body.config.next_certificate);
  });

  it('answers 412 to a POST whose If-Match names an old version', async () => {
    const result = await certificateRoute('POST', name, { 'If-Match': '"old-version"' });
    expect(result.status).toBe(412);
  });
});

describe('deleting a kms_certificate service', () => {
  it('schedules the deletion of its active and pending keys', async () => {
    expect((await h.admin('POST', kmsBody('kms-delete'))).status).toBe(201);
    expect((await certificateRoute('POST', 'kms-delete')).status).toBe(201);
    const keys = await storedKms('kms-delete');
    expect((await h.admin('DELETE', undefined, { name: 'kms-delete' })).status).toBe(200);
    for (const keyArn of [keys.active, keys.next as string]) {
      expect((await keyState(keyArn)).state).toBe('PendingDeletion');
    }
  });
});

describe('a key the administrator brings (kms_key_arn)', () => {
  it('is used, shown, and never scheduled for deletion: not when rotated away from, nor when the service goes', async () => {
    const { KeyMetadata } = await kms.send(
      new CreateKeyCommand({ KeySpec: 'RSA_3072', KeyUsage: 'SIGN_VERIFY' }),
    );
    const keyArn = KeyMetadata?.Arn as string;
    const created = await h.admin('POST', kmsBody('kms-brought', { kms_key_arn: keyArn }));
    expect(created.status).toBe(201);
    expect(created.body.config).toMatchObject({ kms_key_arn: keyArn, key_spec: 'RSA_3072' });
    expect((await storedKms('kms-brought')).active).toBe(keyArn);

    h.emulator.addCertificate(h.clientId, { pem: created.body.config.certificate });
    expect((await h.token('GET', 'kms-brought')).status).toBe(200);

    const issued = await certificateRoute('POST', 'kms-brought');
    const switched = await h.admin(
      'PATCH',
      { config: { active_certificate: issued.body.certificate_thumbprint_sha256 } },
      { name: 'kms-brought' },
    );
    expect(switched.status).toBe(200);
    expect(switched.body.config).not.toHaveProperty('kms_key_arn');
    expect((await keyState(keyArn)).state).toBe('Enabled');
    const rotatedTo = (await storedKms('kms-brought')).active;

    expect((await h.admin('DELETE', undefined, { name: 'kms-brought' })).status).toBe(200);
    expect((await keyState(keyArn)).state).toBe('Enabled');
    expect((await keyState(rotatedTo)).state).toBe('PendingDeletion');
  });

  it.each([
    [
      'a symmetric (ENCRYPT_DECRYPT) key',
      () => h.kms.keyArn,
      /must be an asymmetric RSA_2048 or RSA_3072 key/,
    ],
    [
      'a key that does not exist',
      () => 'arn:aws:kms:us-east-1:000000000000:key/11111111-2222-4333-8444-555555555555',
      /KMS refused to describe this key \(NotFoundException\).*must carry the tag token-broker:broker=token-broker-local/,
    ],
  ])('refuses %s (400 naming config.kms_key_arn)', async (_case, arn, message) => {
    const result = await h.admin('POST', kmsBody(`kms-bad-${Date.now()}`, { kms_key_arn: arn() }));
    expect(result.status).toBe(400);
    expect(result.body.error.message).toMatch(/^config\.kms_key_arn: /);
    expect(result.body.error.message).toMatch(message);
  });

  it('refuses a key pending deletion (not Enabled) and a key_spec the key does not have', async () => {
    const { KeyMetadata } = await kms.send(
      new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }),
    );
    const keyArn = KeyMetadata?.Arn as string;
    const wrongSpec = await h.admin(
      'POST',
      kmsBody('kms-spec', { kms_key_arn: keyArn, key_spec: 'RSA_3072' }),
    );
    expect(wrongSpec.status).toBe(400);
    expect(wrongSpec.body.error.message).toContain('config.kms_key_arn: the key is RSA_2048');

    const { ScheduleKeyDeletionCommand } = await import('@aws-sdk/client-kms');
    await kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyArn, PendingWindowInDays: 7 }));
    const pending = await h.admin('POST', kmsBody('kms-pending', { kms_key_arn: keyArn }));
    expect(pending.status).toBe(400);
    expect(pending.body.error.message).toContain('config.kms_key_arn: the key is PendingDeletion');
  });
});

describe('bad input', () => {
  it.each([
    [{ certificate_validity_days: 731 }, 'config.certificate_validity_days: must be at most 730'],
    [{ certificate_validity_days: 0 }, 'config.certificate_validity_days: must be at least 1'],
    [{ key_spec: 'RSA_4096' }, 'config.key_spec: must be "RSA_2048" or "RSA_3072"'],
    [{ kms_key_arn: 'alias/mine' }, 'config.kms_key_arn: must be the ARN of a KMS key'],
    [
      { client_secret: 'a-client-secret' },
      'config.client_secret: not allowed with credential_type "kms_certificate"',
    ],
    [{ private_key: 'x' }, 'config.private_key: not allowed with credential_type "kms_certificate"'],
  ])('refuses %j (400 naming the field)', async (config, message) => {
    const result = await h.admin('POST', kmsBody(`kms-input-${Date.now()}`, config));
    expect(result.status).toBe(400);
    expect(result.body.error.message).toContain(message);
  });

  it('refuses kms fields on a client_secret service', async () => {
    const result = await h.admin('POST', h.serviceBody('secret-with-kms', {}, { key_spec: 'RSA_2048' }));
    expect(result.status).toBe(400);
    expect(result.body.error.message).toContain(
      'config.key_spec: not allowed with credential_type "client_secret"',
    );
  });

  it('answers 404 with the error shape at GET .../certificate for a service without a certificate', async () => {
    await h.createService('kms-none');
    const result = await certificateRoute('GET', 'kms-none');
    expect(result.status).toBe(404);
    expect(result.headers['content-type']).toBe('application/json');
    expect(result.body.error.message).toContain('has no certificate');
    expect((await certificateRoute('GET', 'kms-missing')).status).toBe(404);
  });

  it('refuses to issue a certificate for a service of another type (400), and changing the type by PATCH', async () => {
    const issued = await certificateRoute('POST', 'kms-none');
    expect(issued.status).toBe(400);
    expect(issued.body.error.message).toContain('does not use credential_type "kms_certificate"');
    const patched = await h.admin(
      'PATCH',
      { config: { credential_type: 'kms_certificate' } },
      { name: 'kms-none' },
    );
    expect(patched.status).toBe(400);
    expect(patched.body.error.message).toContain(
      'config.credential_type: cannot change from "client_secret"',
    );
  });

  it('refuses active_certificate on a service of another type and kms_key_arn in a PATCH', async () => {
    const other = await h.admin('PATCH', { config: { active_certificate: 'x' } }, { name: 'kms-none' });
    expect(other.status).toBe(400);
    expect(other.body.error.message).toMatch(/^config\.active_certificate: only kms_certificate services/);
    const arn = 'arn:aws:kms:us-east-1:000000000000:key/11111111-2222-4333-8444-555555555555';
    const key = await h.admin('PATCH', { config: { kms_key_arn: arn } }, { name: 'kms-graph' });
    expect(key.status).toBe(400);
    expect(key.body.error.message).toMatch(
      /^config\.kms_key_arn: a service's key is chosen when it is created/,
    );
  });
});

describe('all or nothing', () => {
  it('schedules the deletion of the key it created when the create fails after CreateKey', async () => {
    // The second service's name is taken: the batch fails after the first one's key was created.
    await h.createService('kms-taken');
    const before = new Set(await localKeyArns());
    const result = await h.admin('POST', {
      resource: [kmsBody('kms-batch-a'), kmsBody('kms-taken')],
    });
    expect(result.status).toBe(409);
    const created = (await localKeyArns()).filter((arn) => !before.has(arn));
    expect(created).toHaveLength(1);
    expect((await keyState(created[0] as string)).state).toBe('PendingDeletion');
    expect((await h.admin('GET', undefined, { name: 'kms-batch-a' })).status).toBe(404);
  });
});
