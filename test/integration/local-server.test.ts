import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BrokerProcess } from '../fixtures/broker-process';
import { dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { EntraEmulator } from '../fixtures/entra-emulator';
import { expectErrorShape } from '../fixtures/error-shape';
import { createTestCertificate, type TestCertificate } from '../fixtures/tls';

/**
 * `npm start` as a user runs it: `tsx local/server.ts` in a child process, driven over HTTP with fetch, against
 * the Entra emulator. Each child runs in its own process group and is killed in afterAll, whatever happened.
 */

const TOKEN_PATH = (service: string) => `/api/v2/${service}/client_credentials`;
const SERVICES_PATH = '/api/v2/system/service';
/** Retry budget of the brokers facing the https emulator (the production default is 12 s). */
const RETRY_BUDGET_MS = 3000;

interface HttpResult {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: response bodies are asserted field by field
  body: any;
}

/** One request to a local broker; `body` is sent as JSON. */
async function call(
  broker: BrokerProcess,
  method: string,
  urlPath: string,
  body?: unknown,
): Promise<HttpResult> {
  const res = await fetch(`${broker.url}${urlPath}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** An app registered with an emulator, and the service body that uses it. */
class TestApp {
  readonly tenantId = randomUUID();
  readonly clientId = randomUUID();
  readonly clientSecret = `secret-${randomUUID()}`;

  constructor(readonly emulator: EntraEmulator) {
    emulator.registerApp({
      tenantId: this.tenantId,
      clientId: this.clientId,
      clientSecrets: [this.clientSecret],
    });
  }

  /** The README's service, pointed at the emulator. */
  service(name: string) {
    return {
      name,
      label: 'Microsoft Graph',
      description: 'Graph API, application permissions',
      type: 'oauth_azure_ad',
      is_active: true,
      config: {
        client_id: this.clientId,
        client_secret: this.clientSecret,
        tenant_id: this.tenantId,
        grant_type: 'client_credentials',
        is_client_credentials: true,
        scopes: 'https://graph.microsoft.com/.default',
        authority_url: `${this.emulator.url}/{tenant_id}`,
      },
    };
  }
}

describe('npm start (local/server.ts) over HTTP', () => {
  const brokers: BrokerProcess[] = [];
  const emulators: EntraEmulator[] = [];
  const dirs: string[] = [];

  async function startBroker(env: Record<string, string>): Promise<BrokerProcess> {
    const broker = await BrokerProcess.start({ env });
    brokers.push(broker);
    return broker;
  }
  async function startEmulator(options?: Parameters<typeof EntraEmulator.start>[0]): Promise<EntraEmulator> {
    const emulator = await EntraEmulator.start(options);
    emulators.push(emulator);
    return emulator;
  }
  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), 'local-server-'));
    dirs.push(dir);
    return dir;
  }
  const hostOf = (emulator: EntraEmulator) => new URL(emulator.url).host;

  afterAll(async () => {
    for (const broker of brokers) broker.kill();
    await Promise.all(brokers.map((b) => b.exited));
    await Promise.all(emulators.map((e) => e.stop()));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  describe('with its embedded DynamoDB (dynalite) and Secrets Manager', () => {
    let emulator: EntraEmulator;
    let app: TestApp;
    let broker: BrokerProcess;

    beforeAll(async () => {
      emulator = await startEmulator();
      app = new TestApp(emulator);
      broker = await startBroker({
        TOKEN_BROKER_DATA_DIR: await tempDir(),
        TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: hostOf(emulator),
      });
    });

    it('prints its URL on 127.0.0.1 when ready', () => {
      expect(broker.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    });

    it('says in its start-up line that it checks no signatures without TOKEN_BROKER_LOCAL_IAM', () => {
      expect(broker.output()).toMatch(
        /Token Broker listening on http:\S+ \(open: no IAM checks; set TOKEN_BROKER_LOCAL_IAM/,
      );
    });

    it('runs on its embedded dynalite when AWS_ENDPOINT_URL_DYNAMODB is not set', () => {
      expect(broker.output()).toContain('embedded DynamoDB (dynalite)');
    });

    it('walks through the README: create, get a token, get it from the cache, clear, get a new one', async () => {
      // Create a service
      const created = await call(broker, 'POST', SERVICES_PATH, app.service('graph'));
      expect(created.status).toBe(201);

      // Get a token: Entra is asked
      const first = await call(broker, 'GET', TOKEN_PATH('graph'));
      expect(first.status).toBe(200);
      expect(first.headers.get('cache-control')).toBe('no-store');
      expect(first.body).toEqual({
        access_token: expect.any(String),
        token_type: 'Bearer',
        expires_in: expect.any(Number),
        expires_at: expect.stringMatching(/Z$/),
        acquired_at: expect.stringMatching(/Z$/),
        scope: 'https://graph.microsoft.com/.default',
      });
      expect(first.body.access_token === emulator.issuedTokens[0]).toBe(true);
      expect(emulator.tokenRequestCount).toBe(1);

      // Get it again: served from the cache
      const second = await call(broker, 'GET', TOKEN_PATH('graph'));
      expect(second.status).toBe(200);
      expect(second.body.access_token === first.body.access_token).toBe(true);
      expect(emulator.tokenRequestCount).toBe(1);

      // Clear it
      const cleared = await call(broker, 'DELETE', TOKEN_PATH('graph'));
      expect(cleared.status).toBe(200);
      expect(cleared.body).toEqual({ success: true, message: 'Token cache cleared successfully.' });

      // The next GET asks Entra again
      const third = await call(broker, 'GET', TOKEN_PATH('graph'));
      expect(third.status).toBe(200);
      expect(third.body.access_token === first.body.access_token).toBe(false);
      expect(emulator.tokenRequestCount).toBe(2);
    });

    it('answers an unknown route with 404 in the error shape', async () => {
      const res = await call(broker, 'GET', '/api/v2/nothing/here/at/all');
      expect(res.status).toBe(404);
      expectErrorShape(404, res.body);
    });

    it('answers a method the route does not serve with 405 and Allow', async () => {
      const res = await call(broker, 'PUT', TOKEN_PATH('graph'));
      expect(res.status).toBe(405);
      expectErrorShape(405, res.body);
      expect(res.headers.get('allow')).toBe('GET, POST, DELETE');
    });

    it('answers an unknown service with 404 in the error shape', async () => {
      const res = await call(broker, 'GET', TOKEN_PATH('nosuchservice'));
      expect(res.status).toBe(404);
      expectErrorShape(404, res.body);
    });
  });

  describe('stopping and restarting', () => {
    let emulator: EntraEmulator;
    let app: TestApp;

    beforeAll(async () => {
      emulator = await startEmulator();
      app = new TestApp(emulator);
    });

    it('stops on SIGTERM with exit code 0, leaving no process behind', async () => {
      // Prepare
      const broker = await startBroker({ TOKEN_BROKER_DATA_DIR: await tempDir() });
      // Act
      broker.child.kill('SIGTERM');
      // Assess
      expect(await broker.exited).toBe(0);
      expect(broker.groupAlive()).toBe(false);
    });

    it('keeps services and cached tokens in the data dir across a restart', async () => {
      // Prepare: one run creates a service and caches a token, then stops
      const dataDir = await tempDir();
      const env = { TOKEN_BROKER_DATA_DIR: dataDir, TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: hostOf(emulator) };
      const firstRun = await startBroker(env);
      await call(firstRun, 'POST', SERVICES_PATH, app.service('persisted'));
      const cached = await call(firstRun, 'GET', TOKEN_PATH('persisted'));
      firstRun.child.kill('SIGTERM');
      await firstRun.exited;
      const before = emulator.tokenRequestCount;
      // Act
      const secondRun = await startBroker(env);
      const res = await call(secondRun, 'GET', TOKEN_PATH('persisted'));
      // Assess
      expect(res.status).toBe(200);
      expect(res.body.access_token === cached.body.access_token).toBe(true);
      expect(emulator.tokenRequestCount).toBe(before);
    });
  });

  describe('two processes sharing one DynamoDB endpoint and one data dir', () => {
    let emulator: EntraEmulator;
    let app: TestApp;
    let first: BrokerProcess;
    let second: BrokerProcess;

    beforeAll(async () => {
      emulator = await startEmulator();
      app = new TestApp(emulator);
      const suffix = randomUUID().slice(0, 8);
      const env = {
        TOKEN_BROKER_DATA_DIR: await tempDir(),
        TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: hostOf(emulator),
        AWS_ENDPOINT_URL_DYNAMODB: dynamoDbLocalEndpoint(),
        TOKEN_BROKER_SERVICES_TABLE: `local-services-${suffix}`,
        TOKEN_BROKER_TOKEN_CACHE_TABLE: `local-tokens-${suffix}`,
      };
      // Started together: both find the tables missing and race to create them.
      [first, second] = await Promise.all([startBroker(env), startBroker(env)]);
    });

    it('serves through the second the service and the token created through the first: one Entra request', async () => {
      // Prepare
      await call(first, 'POST', SERVICES_PATH, app.service('shared'));
      const fromFirst = await call(first, 'GET', TOKEN_PATH('shared'));
      // Act
      const service = await call(second, 'GET', `${SERVICES_PATH}/shared`);
      const fromSecond = await call(second, 'GET', TOKEN_PATH('shared'));
      // Assess
      expect(service.status).toBe(200);
      expect(service.body.name).toBe('shared');
      expect(fromSecond.status).toBe(200);
      expect(fromSecond.body.access_token === fromFirst.body.access_token).toBe(true);
      expect(emulator.tokenRequestCount).toBe(1);
    });

    it('reads through the second the client secret stored through the first', async () => {
      // Prepare
      await call(first, 'POST', SERVICES_PATH, app.service('shared-secret'));
      const before = emulator.tokenRequestCount;
      // Act: POST always asks Entra, with the secret from the shared store
      const res = await call(second, 'POST', TOKEN_PATH('shared-secret'));
      // Assess
      expect(res.status).toBe(200);
      expect(emulator.tokenRequestCount - before).toBe(1);
    });
  });

  describe('an https Entra endpoint with a private CA', () => {
    let cert: TestCertificate;
    let emulator: EntraEmulator;
    let app: TestApp;
    let trusting: BrokerProcess;
    let untrusting: BrokerProcess;

    beforeAll(async () => {
      cert = await createTestCertificate();
      dirs.push(cert.dir);
      emulator = await startEmulator({ https: { key: cert.keyPem, cert: cert.certPem } });
      app = new TestApp(emulator);
      const env = {
        TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: hostOf(emulator),
        // A hang would show as 504 well within the test's time, rather than as a test timeout.
        TOKEN_BROKER_ENTRA_TIMEOUT_MS: '3000',
        TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS: String(RETRY_BUDGET_MS),
      };
      [trusting, untrusting] = await Promise.all([
        startBroker({ ...env, TOKEN_BROKER_DATA_DIR: await tempDir(), NODE_EXTRA_CA_CERTS: cert.caPath }),
        startBroker({ ...env, TOKEN_BROKER_DATA_DIR: await tempDir() }),
      ]);
    });

    it('gets a token when NODE_EXTRA_CA_CERTS names the CA', async () => {
      expect(emulator.url).toMatch(/^https:/);
      await call(trusting, 'POST', SERVICES_PATH, app.service('tls'));
      const res = await call(trusting, 'GET', TOKEN_PATH('tls'));
      expect(res.status).toBe(200);
      expect(res.body.access_token === emulator.issuedTokens.at(-1)).toBe(true);
    });

    it('answers 502 in the error shape, not 500 or a hang, when the CA is not trusted', async () => {
      await call(untrusting, 'POST', SERVICES_PATH, app.service('untrusted'));
      const res = await call(untrusting, 'GET', TOKEN_PATH('untrusted'));
      expect(res.status).toBe(502);
      expectErrorShape(502, res.body);
      expect(res.body.error.message).toMatch(/identity provider/);
    });

    it('does not retry an untrusted certificate: the 502 comes well before the retry budget is spent', async () => {
      // Prepare
      await call(untrusting, 'POST', SERVICES_PATH, app.service('untrusted-fast'));
      const started = Date.now();
      // Act
      const res = await call(untrusting, 'GET', TOKEN_PATH('untrusted-fast'));
      // Assess: a certificate that does not verify will not verify on the next attempt either
      expect(res.status).toBe(502);
      expect(Date.now() - started).toBeLessThan(RETRY_BUDGET_MS / 3);
    });
  });
});
