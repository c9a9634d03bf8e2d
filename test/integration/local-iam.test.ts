import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenBrokerAccessDeniedError, type TokenBrokerApiError } from '../../client';
import { executeApiTail, tokenRoutes } from '../../lib/execute-api-grants';
import { BrokerProcess } from '../fixtures/broker-process';
import { IamBroker, SERVICE, type TestPrincipal, testPrincipal } from '../fixtures/iam-broker';

/**
 * `npm start` with TOKEN_BROKER_LOCAL_IAM over HTTP: every request is authorized as API Gateway's IAM
 * authorization would, and the handlers see the caller API Gateway would report. Callers sign with the client
 * library (the README's curl and Python examples are in readme-examples.test.ts).
 */

const fingerprint = (token: string) => createHash('sha256').update(token).digest('hex').slice(0, 16);

/** The typed error a call rejects with (fails the test if it resolves). */
async function refusal(call: Promise<unknown>): Promise<TokenBrokerApiError> {
  return call.then(
    () => {
      throw new Error('the call was expected to be refused');
    },
    (error: TokenBrokerApiError) => error,
  );
}

describe('npm start with TOKEN_BROKER_LOCAL_IAM', () => {
  let iam: IamBroker;
  let workload: TestPrincipal;
  let other: TestPrincipal;

  beforeAll(async () => {
    // Exactly what the construct's grantTokenAccess(role, service) allows.
    workload = testPrincipal('workload', tokenRoutes(SERVICE).map(executeApiTail));
    other = testPrincipal('other-team', tokenRoutes('other_service').map(executeApiTail));
    iam = await IamBroker.start([workload, other]);
  });

  afterAll(async () => {
    await iam?.close();
  });

  it('says in its start-up line that IAM checks are on', () => {
    expect(iam.broker.output()).toMatch(
      /Token Broker listening on http:\S+ \(IAM checks on: SigV4 for execute-api in us-east-1, 3 principal\(s\) from /,
    );
  });

  it('refuses an unsigned request with API Gateway\'s "Missing Authentication Token"', async () => {
    const res = await iam.broker.request('GET', `/api/v2/${SERVICE}/client_credentials`);
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ message: 'Missing Authentication Token' });
    expect(res.headers['x-amzn-errortype']).toBe('MissingAuthenticationTokenException');
  });

  it('refuses an unsigned request to an unknown route the same way, as API Gateway does', async () => {
    const res = await iam.broker.request('GET', '/api/v2/nothing/here');
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ message: 'Missing Authentication Token' });
  });

  it('serves a token to a workload granted the service, and the audit line names the caller', async () => {
    const token = await iam.client(workload).getToken(SERVICE);
    expect(fingerprint(token.accessToken)).toBe(fingerprint(iam.emulator.issuedTokens.at(-1) as string));
    const audit = iam.broker
      .output()
      .split('\n')
      .find((line) => line.includes('audit: token served') && line.includes(fingerprint(token.accessToken)));
    expect(audit).toBeDefined();
    expect(JSON.parse(audit as string).caller).toMatchObject({
      userArn: workload.arn,
      caller: 'workload:workload-session',
      accountId: '111122223333',
    });
  });

  it('lets the workload force a refresh and clear the cache of its service', async () => {
    const client = iam.client(workload);
    await expect(client.forceRefresh(SERVICE)).resolves.toMatchObject({ tokenType: 'Bearer' });
    await expect(client.clear(SERVICE)).resolves.toBeUndefined();
  });

  it('refuses the workload a token of a service it was not granted', async () => {
    const error = await refusal(iam.client(workload).getToken('other_service'));
    expect(error).toBeInstanceOf(TokenBrokerAccessDeniedError);
    expect(error.status).toBe(403);
    expect(error.errorType).toBe('AccessDeniedException');
    expect(error.message).toBe(
      `User: ${workload.arn} is not authorized to perform: execute-api:Invoke on resource: ` +
        'arn:aws:execute-api:us-east-1:000000000000:local/local/GET/api/v2/other_service/client_credentials',
    );
  });

  it('refuses a principal granted another service the token of this one', async () => {
    const error = await refusal(iam.client(other).getToken(SERVICE));
    expect(error.errorType).toBe('AccessDeniedException');
  });

  it('refuses the workload every admin route', async () => {
    const client = iam.client(workload);
    const refusals = await Promise.all([
      refusal(client.listServices()),
      refusal(client.getService(SERVICE)),
      refusal(client.createService({ name: 'sneaky' })),
      refusal(client.updateService(SERVICE, { is_active: false })),
      refusal(client.rotateSecret(SERVICE, 'a-new-secret-value')),
      refusal(client.deleteService(SERVICE)),
    ]);
    expect(refusals.map((e) => [e.status, e.errorType])).toEqual(
      Array(6).fill([403, 'AccessDeniedException']),
    );
    // Nothing changed: the admin still sees the service, active.
    const { service } = await iam.client(iam.admin).getService(SERVICE);
    expect(service.is_active).toBe(true);
  });

  it('lets the admin principal (with a session token) manage services', async () => {
    const services = await iam.client(iam.admin).listServices();
    expect(services.map((s) => s.name)).toContain(SERVICE);
  });

  it('refuses the admin principal a token: its grant covers the system routes only', async () => {
    const error = await refusal(iam.client(iam.admin).getToken(SERVICE));
    expect(error.errorType).toBe('AccessDeniedException');
  });

  it("refuses a signature made with the wrong secret key with API Gateway's message", async () => {
    const error = await refusal(iam.client(workload, { secretAccessKey: 'wrong-secret' }).getToken(SERVICE));
    expect(error.status).toBe(403);
    expect(error.errorType).toBe('InvalidSignatureException');
    expect(error.message).toMatch(
      /^The request signature we calculated does not match the signature you provided\./,
    );
  });

  it('refuses an access key the file does not list as an invalid security token', async () => {
    const stranger = testPrincipal('stranger', ['*']);
    const error = await refusal(iam.client(stranger).getToken(SERVICE));
    expect(error.errorType).toBe('UnrecognizedClientException');
    expect(error.message).toBe('The security token included in the request is invalid.');
  });

  it("never writes a principal's secret key or session token to its output", () => {
    const output = iam.broker.output();
    for (const p of [iam.admin, workload, other]) {
      expect(output.includes(p.secret_access_key)).toBe(false);
      if (p.session_token) expect(output.includes(p.session_token)).toBe(false);
    }
  });
});

describe('npm start with an invalid TOKEN_BROKER_LOCAL_IAM file', () => {
  it('does not start, and names the file and each problem without repeating a secret', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bad-iam-'));
    const file = join(dir, 'local-iam.json');
    const secret = 'bad-file-secret-access-key';
    writeFileSync(
      file,
      JSON.stringify({
        region: 'us-east-1',
        account: '000000000000',
        principals: [{ access_key_id: 'AKIDBAD', secret_access_key: secret, arn: 'someone', allow: 'GET/x' }],
      }),
    );
    try {
      const started = BrokerProcess.start({ env: { TOKEN_BROKER_LOCAL_IAM: file } });
      const error = (await started.then(
        (b) => {
          b.kill();
          throw new Error('the broker started');
        },
        (e: Error) => e,
      )) as Error;
      expect(error.message).toMatch(/exited \(1\) before it was ready/);
      expect(error.message).toContain(
        `failed to start: ${file}: principals.0.arn: must be an IAM or STS principal ARN`,
      );
      expect(error.message).toContain('principals.0.allow:');
      expect(error.message).not.toContain(secret);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
