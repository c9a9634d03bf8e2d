import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BrokerProcess } from '../fixtures/broker-process';
import { freePort } from '../fixtures/dynamodb-local';
import { EntraEmulator } from '../fixtures/entra-emulator';

/**
 * `npm start` with the DreamFactory seed's AZURE_AD_* variables: local mode declares that one service at start
 * (embedded dynalite and Secrets Manager, persisted in a temporary data directory) and serves tokens for it from
 * the Entra emulator, over HTTP.
 */

const tenantId = randomUUID();
const clientId = randomUUID();
const clientSecret = `secret-${randomUUID()}`;

let emulator: EntraEmulator;
let dataRoot: string;

beforeAll(async () => {
  emulator = await EntraEmulator.start();
  emulator.registerApp({ tenantId, clientId, clientSecrets: [clientSecret] });
  dataRoot = mkdtempSync(join(tmpdir(), 'seed-test-'));
});
afterAll(async () => {
  await emulator.stop();
  rmSync(dataRoot, { recursive: true, force: true });
});

/** The environment of `npm start` with the seed's variables pointing at the emulator. */
async function seededEnvironment(extra: Record<string, string> = {}): Promise<Record<string, string>> {
  return {
    PORT: String(await freePort()),
    TOKEN_BROKER_DATA_DIR: mkdtempSync(join(dataRoot, 'data-')),
    TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: new URL(emulator.url).host,
    AZURE_AD_CLIENT_ID: clientId,
    AZURE_AD_CLIENT_SECRET: clientSecret,
    AZURE_AD_TENANT_ID: tenantId,
    AZURE_AD_AUTHORITY_URL: `${emulator.url}/{tenant_id}`,
    ...extra,
  };
}

describe('npm start with AZURE_AD_* variables', () => {
  let broker: BrokerProcess;
  let env: Record<string, string>;

  beforeAll(async () => {
    env = await seededEnvironment();
    broker = await BrokerProcess.start({ env });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('listens on the given port', () => {
    expect(broker.url).toBe(`http://127.0.0.1:${env.PORT}`);
  });

  it('reports that it created the service azure_ad_api', () => {
    expect(broker.output()).toContain('service "azure_ad_api" from AZURE_AD_* variables: created');
  });

  it('declares azure_ad_api with the seed’s client and tenant, without the secret', async () => {
    const res = await broker.request('GET', '/api/v2/system/service/azure_ad_api');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      name: 'azure_ad_api',
      type: 'oauth_azure_ad',
      is_active: true,
      config: {
        client_id: clientId,
        tenant_id: tenantId,
        grant_type: 'client_credentials',
        scopes: 'https://graph.microsoft.com/.default',
      },
    });
    expect(res.raw.includes(clientSecret)).toBe(false);
  });

  it('serves a token for azure_ad_api from Entra', async () => {
    const res = await broker.token('GET', 'azure_ad_api');
    expect(res.status).toBe(200);
    expect(res.body.token_type).toBe('Bearer');
    expect(res.body.access_token === emulator.issuedTokens.at(-1)).toBe(true);
    expect(emulator.requests.at(-1)).toMatchObject({ tenant: tenantId, clientId });
  });

  it('serves the OpenAPI document at /api/v2/api_docs', async () => {
    const res = await broker.request('GET', '/api/v2/api_docs');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
  });

  it('never writes the client secret to its output', async () => {
    await broker.token('POST', 'azure_ad_api');
    expect(broker.output().includes(clientSecret)).toBe(false);
  });
});

describe('npm start with AZURE_AD_SERVICE_NAME and AZURE_AD_SCOPES', () => {
  let broker: BrokerProcess;

  beforeAll(async () => {
    broker = await BrokerProcess.start({
      env: await seededEnvironment({
        AZURE_AD_SERVICE_NAME: 'vault',
        AZURE_AD_SCOPES: 'https://vault.azure.net/.default',
      }),
    });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('declares the service under the given name with the given scopes', async () => {
    const res = await broker.request('GET', '/api/v2/system/service');
    expect(res.status).toBe(200);
    expect(res.body.resource).toEqual([
      expect.objectContaining({
        name: 'vault',
        config: expect.objectContaining({ scopes: 'https://vault.azure.net/.default' }),
      }),
    ]);
  });

  it('serves a token for the named service with its scope', async () => {
    const res = await broker.token('GET', 'vault');
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('https://vault.azure.net/.default');
  });
});

describe('npm start without AZURE_AD_* variables', () => {
  let broker: BrokerProcess;

  beforeAll(async () => {
    broker = await BrokerProcess.start({
      env: {
        PORT: String(await freePort()),
        TOKEN_BROKER_DATA_DIR: mkdtempSync(join(dataRoot, 'data-')),
      },
    });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('declares no service', async () => {
    const res = await broker.request('GET', '/api/v2/system/service');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ resource: [] });
  });
});

describe('npm start again on the same data directory', () => {
  it('keeps serving the seeded service after a restart', async () => {
    const env = await seededEnvironment();
    const first = await BrokerProcess.start({ env });
    await first.stop();
    const second = await BrokerProcess.start({ env: { ...env, PORT: String(await freePort()) } });
    try {
      expect(second.output()).toContain('service "azure_ad_api" from AZURE_AD_* variables: updated');
      const res = await second.token('GET', 'azure_ad_api');
      expect(res.status).toBe(200);
    } finally {
      await second.stop();
    }
  });
});
