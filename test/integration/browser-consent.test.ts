/**
 * The authorization code flow end to end, the user's part in a real browser: Debian's chromium, headless, driven
 * by playwright-core (which never downloads a browser). The workload side calls a local broker (`npm start` in a
 * child process) over HTTP; the user's browser opens the authorization_url, picks a user on the Entra emulator's
 * page, consents and lands on the broker's callback.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import { BrokerProcess } from '../fixtures/broker-process';
import { dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { freePort } from '../fixtures/dynamodb-local';
import { EntraEmulator } from '../fixtures/entra-emulator';
import type { EmulatorUser } from '../fixtures/entra-emulator-delegated';

const CHROMIUM = '/usr/bin/chromium';
const SERVICE = 'mail';

let emulator: EntraEmulator;
let broker: BrokerProcess;
let browser: BrowserContext;
let profileDir: string;
const app = { tenantId: randomUUID(), clientId: randomUUID(), clientSecret: `secret-${randomUUID()}` };
const alex: EmulatorUser = {
  tenantId: app.tenantId,
  oid: randomUUID(),
  preferredUsername: 'alex@contoso.onmicrosoft.com',
  name: 'Alex Wilber',
};

// biome-ignore lint/suspicious/noExplicitAny: response bodies are asserted field by field
async function call(method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${broker.url}${urlPath}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, body: await res.json() };
}

beforeAll(async () => {
  emulator = await EntraEmulator.start();
  emulator.delegated.addUser({
    ...alex,
    oid: randomUUID(),
    preferredUsername: 'adele@contoso.onmicrosoft.com',
    name: 'Adele Vance',
  });
  emulator.delegated.addUser(alex);
  const port = await freePort();
  emulator.registerApp({
    tenantId: app.tenantId,
    clientId: app.clientId,
    clientSecrets: [app.clientSecret],
    redirectUris: [`http://127.0.0.1:${port}/api/v2/${SERVICE}/sso`],
  });
  const suffix = randomUUID().slice(0, 8);
  broker = await BrokerProcess.start({
    env: {
      PORT: String(port),
      AWS_ENDPOINT_URL_DYNAMODB: dynamoDbLocalEndpoint(),
      TOKEN_BROKER_SERVICES_TABLE: `services-${suffix}`,
      TOKEN_BROKER_TOKEN_CACHE_TABLE: `tokens-${suffix}`,
      TOKEN_BROKER_USER_GRANTS_TABLE: `grants-${suffix}`,
      TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: new URL(emulator.url).host,
    },
  });
  profileDir = await mkdtemp(path.join(tmpdir(), 'chromium-profile-'));
  browser = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

afterAll(async () => {
  await browser?.close();
  await broker?.stop();
  await emulator?.stop();
  if (profileDir) await rm(profileDir, { recursive: true, force: true });
});

describe('authorization code flow in a real browser', () => {
  it('connects a user through the emulator’s consent page, then serves delegated tokens from the cache', async () => {
    const created = await call('POST', '/api/v2/system/service', {
      name: SERVICE,
      config: {
        client_id: app.clientId,
        client_secret: app.clientSecret,
        tenant_id: app.tenantId,
        grant_type: 'authorization_code',
        authority_url: `${emulator.url}/{tenant_id}`,
      },
    });
    expect(created.status).toBe(201);

    const before = await call('GET', `/api/v2/${SERVICE}/user_token?user=alex-1`);
    expect(before.status).toBe(401);
    expect(before.body.error.context.reason).toBe('not_connected');

    const started = await call(
      'GET',
      `/api/v2/${SERVICE}/authorize?user=alex-1&login_hint=alex%40contoso.onmicrosoft.com`,
    );
    expect(started.status).toBe(200);

    const page = await browser.newPage();
    await page.goto(started.body.authorization_url);
    await page.getByLabel(/Alex Wilber/).check();
    await page.getByRole('button', { name: 'Accept' }).click();
    await page.waitForURL(new RegExp(`/api/v2/${SERVICE}/sso\\?`));
    const landing = await page.textContent('body');
    expect(landing).toContain(`Connected as ${alex.preferredUsername} to ${SERVICE}`);
    expect(landing).not.toMatch(/code=|state=/);

    const first = await call('GET', `/api/v2/${SERVICE}/user_token?user=alex-1`);
    const second = await call('GET', `/api/v2/${SERVICE}/user_token?user=alex-1`);

    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      token_type: 'Bearer',
      scope: 'https://graph.microsoft.com/User.Read',
      user: { key: 'alex-1', oid: alex.oid, tid: app.tenantId, preferred_username: alex.preferredUsername },
    });
    expect(second.body.access_token).toBe(first.body.access_token);
    expect(emulator.delegated.refreshRedemptions).toBe(1);

    const users = await call('GET', `/api/v2/system/service/${SERVICE}/users`);
    expect(users.body.resource).toEqual([expect.objectContaining({ key: 'alex-1', oid: alex.oid })]);
  });

  it('shows a 400 page, not a token, when the same callback is opened twice', async () => {
    const started = await call('GET', `/api/v2/${SERVICE}/authorize?user=alex-2`);
    const page = await browser.newPage();
    await page.goto(started.body.authorization_url);
    await page.getByRole('button', { name: 'Accept' }).click();
    await page.waitForURL(new RegExp(`/api/v2/${SERVICE}/sso\\?`));

    const replay = await page.goto(page.url());

    expect(replay?.status()).toBe(400);
    expect(replay?.headers()['content-security-policy']).toBe("default-src 'none'; frame-ancestors 'none'");
    expect(await page.textContent('body')).toContain('already used');
  });

  it('shows what happened when the user refuses the consent', async () => {
    const started = await call('GET', `/api/v2/${SERVICE}/authorize?user=alex-3`);
    const page = await browser.newPage();
    await page.goto(started.body.authorization_url);

    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.waitForURL(new RegExp(`/api/v2/${SERVICE}/sso\\?`));

    expect(await page.textContent('body')).toContain('You declined the consent');
    const after = await call('GET', `/api/v2/${SERVICE}/user_token?user=alex-3`);
    expect(after.status).toBe(401);
  });

  it('forgets the user on DELETE', async () => {
    const removed = await call('DELETE', `/api/v2/${SERVICE}/user_token?user=alex-1`);
    const after = await call('GET', `/api/v2/${SERVICE}/user_token?user=alex-1`);

    expect(removed).toEqual({ status: 200, body: { success: true, message: 'User authorization removed.' } });
    expect(after.status).toBe(401);
    expect(after.body.error.context.authorization_url).toContain('/oauth2/v2.0/authorize?');
  });
});
