import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { executeApiTail, tokenRoutes } from '../../lib/execute-api-grants';
import { freePort } from '../fixtures/dynamodb-local';
import {
  credentialsEnvironment,
  IamBroker,
  REGION,
  SERVICE,
  type TestPrincipal,
  testPrincipal,
} from '../fixtures/iam-broker';
import { registerSensitiveValue } from '../fixtures/log-redaction';

/**
 * The `token-broker` command (bin/token-broker.js, as package.json's bin runs it) against `npm start` with local
 * IAM checks. Each run is a child process with only the environment given: no AWS configuration of this machine.
 */

const ROOT = join(__dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'token-broker.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const fingerprint = (token: string) => createHash('sha256').update(token).digest('hex').slice(0, 16);

describe('token-broker CLI against npm start with TOKEN_BROKER_LOCAL_IAM', () => {
  let iam: IamBroker;
  let workload: TestPrincipal;
  let home: string;

  /** Runs the CLI; `env` on top of PATH and an empty HOME (no ~/.aws of this machine). */
  function cli(args: string[], env: Record<string, string> = {}, stdin = ''): Promise<Run> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, ...args], {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: home,
          AWS_EC2_METADATA_DISABLED: 'true',
          ...env,
        },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => {
        stdout += c;
      });
      child.stderr.setEncoding('utf8').on('data', (c: string) => {
        stderr += c;
      });
      child.once('error', reject);
      child.once('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(stdin);
    });
  }
  const as = (principal: TestPrincipal) => ({
    TOKEN_BROKER_URL: iam.url,
    ...credentialsEnvironment(principal),
  });
  const served = async () => fingerprint((await iam.client(workload).getToken(SERVICE)).accessToken);

  beforeAll(async () => {
    workload = testPrincipal('cli-app', tokenRoutes(SERVICE).map(executeApiTail));
    const anyToken = testPrincipal('cli-any', ['*/api/v2/*/client_credentials']);
    iam = await IamBroker.start([workload, anyToken]);
    home = mkdtempSync(join(tmpdir(), 'cli-home-'));
  });

  afterAll(async () => {
    await iam?.close();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  describe('help and usage', () => {
    it.each([
      [[], 'token-broker <command>'],
      [['token'], 'token-broker token <service>'],
      [['exec'], 'token-broker exec <service>'],
      [['services'], 'token-broker services <list|get|create|update|delete>'],
      [['services', 'create'], 'token-broker services <list|get|create|update|delete>'],
      [['rotate-secret'], 'token-broker rotate-secret <name>'],
    ])('prints the help of %j with --help and exits 0', async (command, usage) => {
      const result = await cli([...command, '--help']);
      expect(result.code).toBe(0);
      expect(result.stdout.startsWith(`Usage: ${usage}`)).toBe(true);
      expect(result.stdout).toContain('Exit status:');
    });

    it('exits 2 with one line naming an unknown command', async () => {
      const result = await cli(['tokens', SERVICE], as(workload));
      expect(result).toEqual({
        code: 2,
        stdout: '',
        stderr: "token-broker: unknown command: tokens\nRun 'token-broker --help' for usage.\n",
      });
    });

    it('exits 2 naming an unknown option or one the command does not take', async () => {
      const unknown = await cli(['token', SERVICE, '--colour'], as(workload));
      const misplaced = await cli(['services', 'list', '--output', 'token'], as(workload));
      expect([unknown.code, misplaced.code]).toEqual([2, 2]);
      expect(unknown.stderr.split('\n')[0]).toMatch(/^token-broker: Unknown option '--colour'/);
      expect(misplaced.stderr.split('\n')[0]).toBe(
        "token-broker: --output does not apply to 'services list'",
      );
    });

    it('exits 2 without an endpoint, and with an invalid --min-ttl or --output', async () => {
      const noEndpoint = await cli(['token', SERVICE], credentialsEnvironment(workload));
      const minTtl = await cli(['token', SERVICE, '--min-ttl', '1h'], as(workload));
      const output = await cli(['token', SERVICE, '--output', 'xml'], as(workload));
      expect([noEndpoint.code, minTtl.code, output.code]).toEqual([2, 2, 2]);
      expect(noEndpoint.stderr).toMatch(
        /^token-broker: no endpoint: pass --endpoint <url> or set TOKEN_BROKER_URL\n/,
      );
      expect(minTtl.stderr).toMatch(/^token-broker: --min-ttl must be a whole number of seconds, not "1h"\n/);
      expect(output.stderr).toMatch(
        /^token-broker: --output must be one of json, token, header, env, not "xml"\n/,
      );
    });
  });

  describe('token', () => {
    it('prints the API token response as JSON by default', async () => {
      const result = await cli(['token', SERVICE], as(workload));
      expect(result.code).toBe(0);
      const body = JSON.parse(result.stdout);
      expect(body).toEqual({
        access_token: expect.any(String),
        token_type: 'Bearer',
        expires_in: expect.any(Number),
        expires_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
        acquired_at: expect.stringMatching(/Z$/),
        scope: 'https://graph.microsoft.com/.default',
      });
      expect(fingerprint(body.access_token)).toBe(await served());
    });

    it('prints the token alone, an Authorization header, or an env line, as --output asks', async () => {
      const [token, header, env] = await Promise.all([
        cli(['token', SERVICE, '--output', 'token'], as(workload)),
        cli(
          ['token', SERVICE, '--output', 'header', '--scope', 'https://graph.microsoft.com/.default'],
          as(workload),
        ),
        cli(['token', SERVICE, '--output', 'env', '--env-var', 'GRAPH_TOKEN'], as(workload)),
      ]);
      const expected = await served();
      expect([token.code, header.code, env.code]).toEqual([0, 0, 0]);
      expect(fingerprint(token.stdout.replace(/\n$/, ''))).toBe(expected);
      expect(header.stdout.startsWith('Authorization: Bearer ')).toBe(true);
      expect(fingerprint(header.stdout.slice('Authorization: Bearer '.length).replace(/\n$/, ''))).toBe(
        expected,
      );
      expect(env.stdout.startsWith('GRAPH_TOKEN=')).toBe(true);
      expect(fingerprint(env.stdout.slice('GRAPH_TOKEN='.length).replace(/\n$/, ''))).toBe(expected);
    });

    it('signs with a profile of the AWS config files given by --profile', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'cli-aws-'));
      try {
        writeFileSync(
          join(dir, 'credentials'),
          `[cli-app]\naws_access_key_id = ${workload.access_key_id}\naws_secret_access_key = ${workload.secret_access_key}\n`,
        );
        writeFileSync(join(dir, 'config'), `[profile cli-app]\nregion = ${REGION}\n`);
        const result = await cli(
          ['token', SERVICE, '--output', 'token', '--profile', 'cli-app', '--region', REGION],
          {
            TOKEN_BROKER_URL: iam.url,
            AWS_SHARED_CREDENTIALS_FILE: join(dir, 'credentials'),
            AWS_CONFIG_FILE: join(dir, 'config'),
          },
        );
        expect(result.stderr).toBe('');
        expect(fingerprint(result.stdout.trim())).toBe(await served());
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('gets a new token from Entra with --force', async () => {
      const before = iam.emulator.tokenRequestCount;
      const result = await cli(['token', SERVICE, '--force', '--output', 'token'], as(workload));
      expect(result.code).toBe(0);
      expect(iam.emulator.tokenRequestCount).toBe(before + 1);
      expect(fingerprint(result.stdout.trim())).toBe(fingerprint(iam.emulator.issuedTokens.at(-1) as string));
    });

    it('exits 3 with the refusal in one line for a service the caller was not granted', async () => {
      const result = await cli(['token', 'other_service'], as(workload));
      expect(result.code).toBe(3);
      expect(result.stdout).toBe('');
      expect(result.stderr).toBe(
        `token-broker: User: ${workload.arn} is not authorized to perform: execute-api:Invoke on resource: ` +
          'arn:aws:execute-api:us-east-1:000000000000:local/local/GET/api/v2/other_service/client_credentials (HTTP 403)\n',
      );
    });

    it('exits 3 with only the first line of a signature mismatch, and the details with --verbose', async () => {
      const env = { ...as(workload), AWS_SECRET_ACCESS_KEY: 'not-the-secret' };
      const plain = await cli(['token', SERVICE], env);
      const verbose = await cli(['token', SERVICE, '--verbose'], env);
      expect([plain.code, verbose.code]).toEqual([3, 3]);
      expect(plain.stderr).toBe(
        'token-broker: The request signature we calculated does not match the signature you provided. Check your ' +
          'AWS Secret Access Key and signing method. Consult the service documentation for details. (HTTP 403)\n',
      );
      expect(verbose.stderr.startsWith(plain.stderr)).toBe(true);
      expect(JSON.parse(verbose.stderr.slice(plain.stderr.length))).toMatchObject({
        status: 403,
        error_type: 'InvalidSignatureException',
        error: {
          code: 403,
          message: expect.stringContaining('The Canonical String for this request should have been'),
        },
      });
    });

    it('exits 4 for an unknown service', async () => {
      const anyToken = iam.principals[1] as TestPrincipal;
      const result = await cli(['token', 'no_such_service'], as(anyToken));
      expect(result.code).toBe(4);
      expect(result.stderr).toMatch(/^token-broker: .*no_such_service.* \(HTTP 404\)\n$/);
    });

    it('exits 6 when the broker cannot be reached', async () => {
      const result = await cli(
        ['token', SERVICE, '--endpoint', `http://127.0.0.1:${await freePort()}`],
        as(workload),
      );
      expect(result.code).toBe(6);
      expect(result.stderr).toMatch(
        /^token-broker: cannot reach the broker at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED\n$/,
      );
    });

    it('exits 7 when there are no AWS credentials to sign with', async () => {
      const result = await cli(['token', SERVICE], { TOKEN_BROKER_URL: iam.url, AWS_REGION: REGION });
      expect(result.code).toBe(7);
      expect(result.stderr).toMatch(/^token-broker: no AWS credentials to sign with: /);
    });
  });

  describe('exec', () => {
    it('runs the command with the token in AZURE_ACCESS_TOKEN and exits with its status', async () => {
      const result = await cli(
        [
          'exec',
          SERVICE,
          '--',
          'sh',
          '-c',
          'printf %s "$AZURE_ACCESS_TOKEN" | sha256sum | cut -c1-16; exit 7',
        ],
        as(workload),
      );
      expect(result.code).toBe(7);
      expect(result.stdout.trim()).toBe(await served());
    });

    it('uses the variable --env-var names', async () => {
      const result = await cli(
        ['exec', SERVICE, '--env-var', 'GRAPH', '--', 'sh', '-c', 'test -n "$GRAPH"'],
        as(workload),
      );
      expect(result.code).toBe(0);
    });

    it('exits 127 when the command does not exist, and 2 without a command', async () => {
      const missing = await cli(['exec', SERVICE, '--', 'no-such-command-here'], as(workload));
      const none = await cli(['exec', SERVICE], as(workload));
      expect(missing.code).toBe(127);
      expect(missing.stderr).toBe('token-broker: cannot run no-such-command-here: ENOENT\n');
      expect(none.code).toBe(2);
    });

    it('does not run the command when the token is refused', async () => {
      const result = await cli(['exec', 'other_service', '--', 'sh', '-c', 'echo ran'], as(workload));
      expect(result.code).toBe(3);
      expect(result.stdout).toBe('');
    });
  });

  describe('services and rotate-secret', () => {
    it('lists, gets, creates, updates and deletes services as the admin', async () => {
      const admin = as(iam.admin);
      const body = JSON.stringify({
        name: 'cli_made',
        label: 'made by the CLI',
        type: 'oauth_azure_ad',
        is_active: true,
        config: {
          client_id: '22222222-2222-4222-8222-222222222222',
          client_secret: 'cli-made-client-secret',
          tenant_id: '11111111-1111-4111-8111-111111111111',
          authority_url: `${iam.emulator.url}/{tenant_id}`,
        },
      });
      registerSensitiveValue('client secret', 'cli-made-client-secret');
      const created = await cli(['services', 'create', '--file', '-'], admin, body);
      expect(created.code).toBe(0);
      expect(JSON.parse(created.stdout)).toMatchObject({ name: 'cli_made', label: 'made by the CLI' });
      expect(created.stdout).not.toContain('cli-made-client-secret');

      const again = await cli(['services', 'create', '--file', '-'], admin, body);
      expect(again.code).toBe(5);

      const list = await cli(['services', 'list'], admin);
      expect(JSON.parse(list.stdout).resource.map((s: { name: string }) => s.name)).toEqual(
        expect.arrayContaining([SERVICE, 'cli_made']),
      );

      const dir = mkdtempSync(join(tmpdir(), 'cli-patch-'));
      try {
        writeFileSync(join(dir, 'patch.json'), '{"label": "renamed"}');
        const got = await cli(['services', 'get', 'cli_made', '--verbose'], admin);
        const etag = /ETag (\S+)/.exec(got.stderr)?.[1] as string;
        const updated = await cli(
          ['services', 'update', 'cli_made', '--file', join(dir, 'patch.json'), '--if-match', etag],
          admin,
        );
        expect(JSON.parse(updated.stdout).label).toBe('renamed');
        const stale = await cli(
          ['services', 'update', 'cli_made', '--file', join(dir, 'patch.json'), '--if-match', etag],
          admin,
        );
        expect(stale.code).toBe(5);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }

      const deleted = await cli(['services', 'delete', 'cli_made'], admin);
      expect(deleted.code).toBe(0);
      const gone = await cli(['services', 'get', 'cli_made'], admin);
      expect(gone.code).toBe(4);
    });

    it('exits 3 for a workload calling the admin routes', async () => {
      const result = await cli(['services', 'list'], as(workload));
      expect(result.code).toBe(3);
    });

    it('exits 2 for a --file that cannot be read or is not a JSON object', async () => {
      const missing = await cli(['services', 'create', '--file', '/nonexistent/body.json'], as(iam.admin));
      const notJson = await cli(['services', 'create', '--file', '-'], as(iam.admin), 'name=x');
      expect([missing.code, notJson.code]).toEqual([2, 2]);
      expect(missing.stderr).toMatch(/^token-broker: cannot read \/nonexistent\/body.json: ENOENT\n/);
      expect(notJson.stderr).toMatch(/^token-broker: standard input is not valid JSON/);
    });

    it('rotates the client secret read from standard input, never echoing it', async () => {
      const newSecret = `rotated-${createHash('sha256').update(String(Math.random())).digest('hex')}`;
      registerSensitiveValue('client secret', newSecret);
      const { service } = await iam.client(iam.admin).getService(SERVICE);
      const clientId = (service.config as { client_id: string }).client_id;
      iam.emulator.setClientSecrets(clientId, [newSecret]);

      const result = await cli(['rotate-secret', SERVICE], as(iam.admin), `${newSecret}\n`);
      expect(result.code).toBe(0);
      expect(result.stdout + result.stderr).not.toContain(newSecret);

      // The broker now asks Entra with the new secret (the emulator accepts only that one).
      const forced = await cli(['token', SERVICE, '--force', '--output', 'token'], as(workload));
      expect(forced.code).toBe(0);
    });

    it('exits 2 when standard input holds no secret', async () => {
      const result = await cli(['rotate-secret', SERVICE], as(iam.admin), '');
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/^token-broker: standard input held no secret\n/);
    });
  });
});
