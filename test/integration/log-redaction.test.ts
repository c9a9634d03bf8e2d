import { randomUUID } from 'node:crypto';
import { BrokerHarness } from '../fixtures/broker-harness';
import { EntraEmulator } from '../fixtures/entra-emulator';
import {
  assertNoLeaks,
  capturedOutput,
  findLeaks,
  recordLogOutput,
  type SensitiveKind,
  sensitiveKindOf,
} from '../fixtures/log-redaction';

/**
 * The redaction proof itself (issue 6 §2): the setup file log-redaction-setup.ts fails any test file whose log
 * output contains a registered secret or token. These tests show that the output is really captured and that
 * the check really fails, without leaking anything into this file's own output.
 */

/** A registered-looking secret that is not registered (so this file's own check stays green). */
const SYNTHETIC_SECRET = `secret-${randomUUID()}`;
const SYNTHETIC_TOKEN = `eyJ0eXAiOiJKV1QifQ.eyJ1dGkiOiJ4In0.${randomUUID().replaceAll('-', '')}`;
const values = new Map<string, SensitiveKind>([
  [SYNTHETIC_SECRET, 'client secret'],
  [SYNTHETIC_TOKEN, 'access token'],
]);

/** Replaces `stream.write` the way a test capturing output does (no pass-through); returns the restorer. */
function swallow(stream: NodeJS.WriteStream, into: string[]): () => void {
  const write = stream.write;
  stream.write = ((chunk: string) => {
    into.push(String(chunk));
    return true;
  }) as typeof stream.write;
  return () => {
    stream.write = write;
  };
}

describe('the leak check', () => {
  it('finds a registered client secret in a log line and names its kind, not its value', () => {
    const leaks = findLeaks(
      [{ name: 'log output', text: `{"level":"INFO","x":"${SYNTHETIC_SECRET}"}` }],
      values,
    );
    expect(leaks).toEqual([{ kind: 'client secret', source: 'log output' }]);
  });

  it('finds an access token embedded in a longer line', () => {
    const leaks = findLeaks(
      [{ name: 'log output', text: `Authorization: Bearer ${SYNTHETIC_TOKEN}\n` }],
      values,
    );
    expect(leaks).toEqual([{ kind: 'access token', source: 'log output' }]);
  });

  it('fails with a message naming the kind, the source and the test file, never the value', () => {
    const sources = [
      { name: 'log output', text: `secret is ${SYNTHETIC_SECRET}` },
      { name: 'Entra emulator request log', text: JSON.stringify([{ token: SYNTHETIC_TOKEN }]) },
    ];
    let message = '';
    try {
      assertNoLeaks(sources, values, 'test/integration/example.test.ts');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toBe(
      'redaction: test/integration/example.test.ts leaked a client secret into log output, an access token into Entra emulator request log (values not repeated here)',
    );
    expect(message).not.toContain(SYNTHETIC_SECRET);
    expect(message).not.toContain(SYNTHETIC_TOKEN);
  });

  it('passes when no registered value occurs (fingerprints and other secrets are fine)', () => {
    const text = `token served fingerprint=${SYNTHETIC_TOKEN.slice(-8)} secret-${randomUUID()}`;
    expect(() => assertNoLeaks([{ name: 'log output', text }], values, 'x.test.ts')).not.toThrow();
  });

  it('does not look for values too short to tell apart from ordinary text', () => {
    const short = new Map<string, SensitiveKind>([['x', 'client secret']]);
    expect(findLeaks([{ name: 'log output', text: 'application/x-www-form-urlencoded' }], short)).toEqual([]);
  });
});

describe('the capture', () => {
  it('records console.*, process.stdout.write and process.stderr.write, and passes them on', () => {
    const marker = randomUUID();
    const stdout: string[] = [];
    const stderr: string[] = [];
    // A test's own stream capture (as deploy-fidelity.test.ts does) is teed too, and still receives everything.
    const restore = [swallow(process.stdout, stdout), swallow(process.stderr, stderr)];
    const log = console.log;
    const consoleLines: unknown[][] = [];
    console.log = (...args: unknown[]) => consoleLines.push(args);
    try {
      console.log(`console ${marker}`, { nested: { deeper: { value: `object ${marker}` } } });
      process.stdout.write(`stdout ${marker}\n`);
      process.stderr.write(Buffer.from(`stderr ${marker}\n`));
    } finally {
      console.log = log;
      for (const undo of restore) undo();
    }
    const output = capturedOutput();
    for (const what of ['console', 'object', 'stdout', 'stderr'])
      expect(output).toContain(`${what} ${marker}`);
    expect(stdout).toEqual([`stdout ${marker}\n`]);
    expect(stderr).toEqual([`stderr ${marker}\n`]);
    expect(consoleLines).toHaveLength(1);
  });

  it('records text handed to recordLogOutput (for output gathered elsewhere, such as a child process)', () => {
    const marker = randomUUID();
    recordLogOutput(`child said ${marker}`);
    expect(capturedOutput()).toContain(`child said ${marker}`);
  });

  it('composes with BrokerHarness: what the handlers log lands in h.logs and in the capture', async () => {
    const h = await BrokerHarness.start();
    try {
      await h.createService('redaction');
      const res = await h.token('GET', 'redaction');
      expect(res.status).toBe(200);
      const output = capturedOutput();
      expect(h.logs.length).toBeGreaterThan(0);
      for (const line of h.logs) expect(output).toContain(line);
    } finally {
      await h.close();
    }
  });
});

describe('what is registered as sensitive', () => {
  let emulator: EntraEmulator;
  const tenantId = randomUUID();
  const clientId = randomUUID();
  const constructorSecret = `secret-${randomUUID()}`;

  beforeAll(async () => {
    emulator = await EntraEmulator.start({
      apps: [{ tenantId, clientId, clientSecrets: [constructorSecret] }],
    });
  });
  afterAll(async () => {
    await emulator.stop();
  });

  /** Posts a token request for the app with `form` fields and extra headers. */
  async function requestToken(form: Record<string, string>, headers: Record<string, string> = {}) {
    return fetch(emulator.tokenEndpoint(tenantId), {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        scope: 'https://graph.microsoft.com/.default',
        ...form,
      }),
    });
  }

  it('registers the client secrets of apps given to the constructor', () => {
    expect(sensitiveKindOf(constructorSecret)).toBe('client secret');
  });

  it('registers secrets given to registerApp and setClientSecrets', () => {
    const registered = `secret-${randomUUID()}`;
    const rotated = `secret-${randomUUID()}`;
    emulator.registerApp({ tenantId, clientId: randomUUID(), clientSecrets: [registered] });
    emulator.setClientSecrets(clientId, [constructorSecret, rotated]);
    expect(sensitiveKindOf(registered)).toBe('client secret');
    expect(sensitiveKindOf(rotated)).toBe('client secret');
  });

  it('registers secrets of apps added over the control endpoint', async () => {
    const secret = `secret-${randomUUID()}`;
    const res = await fetch(`${emulator.url}/_emulator/apps`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ tenantId, clientId: randomUUID(), clientSecrets: [secret] }),
    });
    expect(res.status).toBe(204);
    expect(sensitiveKindOf(secret)).toBe('client secret');
  });

  it('registers every access token it issues', async () => {
    const res = await requestToken({ client_id: clientId, client_secret: constructorSecret });
    const body = (await res.json()) as { access_token: string };
    expect(body.access_token).toBe(emulator.issuedTokens.at(-1));
    expect(sensitiveKindOf(body.access_token)).toBe('access token');
  });

  it('registers credentials presented to it, also wrong ones', async () => {
    const wrong = `wrong-${randomUUID()}`;
    const assertion = `eyJhbGciOiJSUzI1NiJ9.${randomUUID()}.sig`;
    await requestToken({ client_id: clientId, client_secret: wrong });
    await requestToken({
      client_id: clientId,
      client_assertion: assertion,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    });
    expect(sensitiveKindOf(wrong)).toBe('client secret');
    expect(sensitiveKindOf(assertion)).toBe('client assertion');
  });

  it('keeps secrets and assertions out of its request log, whichever way they were presented', async () => {
    const basicSecret = `secret-${randomUUID()}`;
    emulator.registerApp({ tenantId, clientId: 'basic-app', clientSecrets: [basicSecret] });
    const assertion = `eyJhbGciOiJSUzI1NiJ9.${randomUUID()}.sig`;
    await requestToken({ client_id: clientId, client_secret: constructorSecret });
    await requestToken(
      {},
      { Authorization: `Basic ${Buffer.from(`basic-app:${basicSecret}`).toString('base64')}` },
    );
    await requestToken({
      client_id: clientId,
      client_assertion: assertion,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    });
    const credentials = emulator.requests.map((r) => r.credential);
    expect(credentials).toEqual(
      expect.arrayContaining(['client_secret_post', 'client_secret_basic', 'client_assertion']),
    );
    const log = JSON.stringify(emulator.requests);
    for (const value of [constructorSecret, basicSecret, assertion]) expect(log.includes(value)).toBe(false);
  });
});
