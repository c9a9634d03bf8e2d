/**
 * Refresh-token rotation across processes: two `npm start` brokers sharing DynamoDB Local, one Secrets Manager
 * and one KMS (like two Lambda instances), hit with 64 concurrent `user_token` calls for a user with no servable
 * token cached. The Entra emulator refuses a refresh token used twice, so a second redemption would show.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import { ensureLocalKey, LOCAL_KMS_KEY_ALIAS, startKmsServer } from '../../local/kms-server';
import { startSecretsManagerServer } from '../../local/secrets-manager-server';
import { BrokerProcess } from '../fixtures/broker-process';
import { dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { EntraEmulator } from '../fixtures/entra-emulator';
import { consentWithoutBrowser } from '../fixtures/entra-emulator-delegated';

const BASE = 'http://127.0.0.1:9';
const app = { tenantId: randomUUID(), clientId: randomUUID(), clientSecret: `secret-${randomUUID()}` };
const user = {
  tenantId: app.tenantId,
  oid: randomUUID(),
  preferredUsername: 'adele@contoso.onmicrosoft.com',
  name: 'Adele Vance',
};

let emulator: EntraEmulator;
let brokers: BrokerProcess[] = [];
let closers: Array<() => Promise<void>> = [];
let dataDir: string;

beforeAll(async () => {
  emulator = await EntraEmulator.start();
  emulator.registerApp({
    tenantId: app.tenantId,
    clientId: app.clientId,
    clientSecrets: [app.clientSecret],
    redirectUris: [`${BASE}/api/v2/mail/sso`],
  });
  emulator.delegated.addUser(user);
  dataDir = await mkdtemp(path.join(tmpdir(), 'user-token-processes-'));
  const secrets = await startSecretsManagerServer({ dataDir });
  const kms = await startKmsServer({ dataDir });
  closers = [() => secrets.close(), () => kms.close()];
  const keyArn = await ensureLocalKey(
    new KMSClient({
      endpoint: kms.url,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    }),
    LOCAL_KMS_KEY_ALIAS,
  );
  const suffix = randomUUID().slice(0, 8);
  const env = {
    AWS_ENDPOINT_URL_DYNAMODB: dynamoDbLocalEndpoint(),
    AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.url,
    AWS_ENDPOINT_URL_KMS: kms.url,
    TOKEN_BROKER_TOKEN_KEY_ID: keyArn,
    TOKEN_BROKER_SERVICES_TABLE: `services-${suffix}`,
    TOKEN_BROKER_TOKEN_CACHE_TABLE: `tokens-${suffix}`,
    TOKEN_BROKER_USER_GRANTS_TABLE: `grants-${suffix}`,
    TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: new URL(emulator.url).host,
    // Both brokers name the same callback, as instances behind one API do.
    TOKEN_BROKER_PUBLIC_BASE_URL: BASE,
  };
  brokers = await Promise.all([BrokerProcess.start({ env }), BrokerProcess.start({ env })]);
});

afterAll(async () => {
  await Promise.all(brokers.map((b) => b.stop()));
  for (const close of closers) await close();
  await emulator?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** A response; bodies are asserted field by field. */
// biome-ignore lint/suspicious/noExplicitAny: response bodies are asserted field by field
type Reply = { status: number; body: any };

async function call(broker: BrokerProcess, method: string, urlPath: string, body?: unknown): Promise<Reply> {
  const res = await fetch(`${broker.url}${urlPath}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: await res.json() };
}

it('costs one refresh redemption for 64 concurrent user_token calls across 2 processes, and every caller gets the token', async () => {
  const [a, b] = brokers as [BrokerProcess, BrokerProcess];
  const created = await call(a, 'POST', '/api/v2/system/service', {
    name: 'mail',
    config: {
      client_id: app.clientId,
      client_secret: app.clientSecret,
      tenant_id: app.tenantId,
      grant_type: 'authorization_code',
      authority_url: `${emulator.url}/{tenant_id}`,
    },
  });
  expect(created.status).toBe(201);
  const started = await call(b, 'GET', '/api/v2/mail/authorize?user=adele');
  const landing = await consentWithoutBrowser(started.body.authorization_url, { userOid: user.oid });
  const callback = await fetch(`${a.url}/api/v2/mail/sso${landing.search}`);
  expect(callback.status).toBe(200);
  const before = emulator.delegated.refreshRequests;

  const results = await Promise.all(
    Array.from({ length: 64 }, (_, i) =>
      call(i % 2 === 0 ? a : b, 'GET', '/api/v2/mail/user_token?user=adele'),
    ),
  );

  expect(results.map((r) => r.status)).toEqual(Array(64).fill(200));
  expect(new Set(results.map((r) => r.body.access_token)).size).toBe(1);
  expect(emulator.delegated.refreshRequests - before).toBe(1);
});
