import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { authorizeRequest, type SignedRequest } from '../../local/iam-authorizer';
import { grantedRoute, LocalIamPolicy } from '../../local/iam-policy';

/**
 * The local IAM check as a function of (file, request, clock). Requests are signed with the AWS SDK's signer at a
 * fixed time; the integration tests sign with curl, botocore and the client instead.
 */

const NOW = new Date('2026-11-27T12:00:00Z');
const WORKLOAD = {
  access_key_id: 'AKIDWORKLOAD1',
  secret_access_key: 'workload-secret-key',
  arn: 'arn:aws:sts::111122223333:assumed-role/app/session',
  allow: ['GET/api/v2/azure_ad_api/client_credentials'],
};
const ADMIN = {
  access_key_id: 'ASIAADMIN1',
  secret_access_key: 'admin-secret-key',
  session_token: 'admin-session-token',
  arn: 'arn:aws:iam::444455556666:user/ops/alice',
  allow: ['*/api/v2/system/*'],
};
const policy = LocalIamPolicy.fromJson({
  region: 'us-east-1',
  account: '000000000000',
  principals: [WORKLOAD, ADMIN],
});

interface SignOptions {
  method?: string;
  path?: string;
  query?: Record<string, string>;
  body?: string;
  headers?: Record<string, string>;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  region?: string;
  service?: string;
  at?: Date;
}

/** A request signed by the SDK's signer, as the local server would receive it (lower-cased headers). */
async function signed(options: SignOptions = {}): Promise<SignedRequest> {
  const path = options.path ?? '/api/v2/azure_ad_api/client_credentials';
  const signer = new SignatureV4({
    service: options.service ?? 'execute-api',
    region: options.region ?? 'us-east-1',
    credentials: options.credentials ?? {
      accessKeyId: WORKLOAD.access_key_id,
      secretAccessKey: WORKLOAD.secret_access_key,
    },
    sha256: Sha256,
  });
  const request = await signer.sign(
    {
      method: options.method ?? 'GET',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: 3000,
      path,
      query: options.query ?? {},
      headers: { host: '127.0.0.1:3000', ...options.headers },
      body: options.body,
    },
    { signingDate: options.at ?? NOW },
  );
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(request.headers)) headers[k.toLowerCase()] = v;
  const query: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(options.query ?? {})) query[k] = [v];
  return {
    method: options.method ?? 'GET',
    path,
    query,
    headers,
    body: Buffer.from(options.body ?? ''),
  };
}

const adminCredentials = {
  accessKeyId: ADMIN.access_key_id,
  secretAccessKey: ADMIN.secret_access_key,
  sessionToken: ADMIN.session_token,
};

describe('local IAM authorization', () => {
  it('refuses a request without a signature with "Missing Authentication Token"', async () => {
    const decision = await authorizeRequest(
      policy,
      {
        method: 'GET',
        path: '/api/v2/azure_ad_api/client_credentials',
        query: {},
        headers: {},
        body: Buffer.alloc(0),
      },
      NOW,
    );
    expect(decision).toEqual({
      allowed: false,
      refusal: {
        statusCode: 403,
        errorType: 'MissingAuthenticationTokenException',
        message: 'Missing Authentication Token',
      },
    });
  });

  it('lets an allowed, correctly signed request through with the identity API Gateway would report', async () => {
    const decision = await authorizeRequest(policy, await signed(), NOW);
    expect(decision).toEqual({
      allowed: true,
      identity: {
        caller: 'app:session',
        userArn: WORKLOAD.arn,
        accountId: '111122223333',
        accessKey: WORKLOAD.access_key_id,
      },
    });
  });

  it('refuses a signature made with the wrong secret, showing the canonical request it expected', async () => {
    const request = await signed({
      credentials: { accessKeyId: WORKLOAD.access_key_id, secretAccessKey: 'not-the-secret' },
    });
    const decision = await authorizeRequest(policy, request, NOW);
    expect(decision.allowed).toBe(false);
    if (decision.allowed) return;
    expect(decision.refusal.errorType).toBe('InvalidSignatureException');
    expect(decision.refusal.message).toMatch(
      /^The request signature we calculated does not match the signature you provided\. Check your AWS Secret Access Key and signing method\. Consult the service documentation for details\.\n\nThe Canonical String for this request should have been\n'GET\n\/api\/v2\/azure_ad_api\/client_credentials\n/,
    );
    expect(decision.refusal.message).not.toContain(WORKLOAD.secret_access_key);
  });

  it('refuses a request whose body changed after signing', async () => {
    const request = await signed({
      method: 'POST',
      body: '{"a":1}',
      headers: { 'content-type': 'application/json' },
    });
    request.body = Buffer.from('{"a":2}');
    const decision = await authorizeRequest(policy, request, NOW);
    expect(decision.allowed ? 'allowed' : decision.refusal.errorType).toBe('InvalidSignatureException');
  });

  it('refuses a request whose signed header changed after signing', async () => {
    const request = await signed({ headers: { 'x-custom': 'one' } });
    request.headers['x-custom'] = 'two';
    const decision = await authorizeRequest(policy, request, NOW);
    expect(decision.allowed ? 'allowed' : decision.refusal.errorType).toBe('InvalidSignatureException');
  });

  it('refuses a request with a query parameter added after signing', async () => {
    const request = await signed();
    request.query.scope = ['https://vault.azure.net/.default'];
    const decision = await authorizeRequest(policy, request, NOW);
    expect(decision.allowed ? 'allowed' : decision.refusal.errorType).toBe('InvalidSignatureException');
  });

  it('checks the signed query string', async () => {
    const decision = await authorizeRequest(
      policy,
      await signed({ query: { scope: 'https://graph.microsoft.com/.default', min_ttl: '600' } }),
      NOW,
    );
    expect(decision.allowed).toBe(true);
  });

  it('ignores headers a proxy adds that the caller did not sign', async () => {
    const request = await signed();
    request.headers['user-agent'] = 'some proxy';
    request.headers['x-forwarded-for'] = '10.0.0.1';
    const decision = await authorizeRequest(policy, request, NOW);
    expect(decision.allowed).toBe(true);
  });

  it('refuses an unknown access key as an invalid security token', async () => {
    const request = await signed({ credentials: { accessKeyId: 'AKIDUNKNOWN', secretAccessKey: 'x' } });
    const decision = await authorizeRequest(policy, request, NOW);
    expect(decision).toEqual({
      allowed: false,
      refusal: {
        statusCode: 403,
        errorType: 'UnrecognizedClientException',
        message: 'The security token included in the request is invalid.',
      },
    });
  });

  it('requires the session token of a principal that has one', async () => {
    const without = await signed({
      path: '/api/v2/system/service',
      credentials: { accessKeyId: ADMIN.access_key_id, secretAccessKey: ADMIN.secret_access_key },
    });
    const wrong = await signed({
      path: '/api/v2/system/service',
      credentials: { ...adminCredentials, sessionToken: 'another-session' },
    });
    const right = await signed({ path: '/api/v2/system/service', credentials: adminCredentials });
    const message = (d: Awaited<ReturnType<typeof authorizeRequest>>) =>
      d.allowed ? 'allowed' : d.refusal.message;
    expect(message(await authorizeRequest(policy, without, NOW))).toBe(
      'The security token included in the request is invalid.',
    );
    expect(message(await authorizeRequest(policy, wrong, NOW))).toBe(
      'The security token included in the request is invalid.',
    );
    expect(message(await authorizeRequest(policy, right, NOW))).toBe('allowed');
  });

  it('refuses a session token from a principal that has none', async () => {
    const request = await signed({
      credentials: {
        accessKeyId: WORKLOAD.access_key_id,
        secretAccessKey: WORKLOAD.secret_access_key,
        sessionToken: 'x',
      },
    });
    const decision = await authorizeRequest(policy, request, NOW);
    expect(decision.allowed ? 'allowed' : decision.refusal.errorType).toBe('UnrecognizedClientException');
  });

  it('accepts a signature up to 15 minutes old or ahead', async () => {
    const old = await signed({ at: new Date(NOW.getTime() - 14 * 60_000) });
    const ahead = await signed({ at: new Date(NOW.getTime() + 14 * 60_000) });
    expect((await authorizeRequest(policy, old, NOW)).allowed).toBe(true);
    expect((await authorizeRequest(policy, ahead, NOW)).allowed).toBe(true);
  });

  it('refuses a signature more than 15 minutes old as expired', async () => {
    const request = await signed({ at: new Date(NOW.getTime() - 16 * 60_000) });
    const decision = await authorizeRequest(policy, request, NOW);
    expect(decision.allowed ? 'allowed' : decision.refusal.message).toBe(
      'Signature expired: 20261127T114400Z is now earlier than 20261127T114500Z (20261127T120000Z - 15 min.)',
    );
  });

  it('refuses a signature more than 15 minutes in the future', async () => {
    const request = await signed({ at: new Date(NOW.getTime() + 16 * 60_000) });
    const decision = await authorizeRequest(policy, request, NOW);
    expect(decision.allowed ? 'allowed' : decision.refusal.message).toBe(
      'Signature not yet current: 20261127T121600Z is still later than 20261127T121500Z (20261127T120000Z + 15 min.)',
    );
  });

  it('refuses a signature for another region or another service', async () => {
    const region = await authorizeRequest(policy, await signed({ region: 'eu-west-1' }), NOW);
    const service = await authorizeRequest(policy, await signed({ service: 'lambda' }), NOW);
    expect(region.allowed ? 'allowed' : region.refusal.message).toBe(
      'Credential should be scoped to a valid region.',
    );
    expect(service.allowed ? 'allowed' : service.refusal.message).toBe(
      "Credential should be scoped to correct service: 'execute-api'.",
    );
  });

  it('refuses an Authorization header that is not SigV4', async () => {
    const decision = await authorizeRequest(
      policy,
      {
        method: 'GET',
        path: '/api/v2/azure_ad_api/client_credentials',
        query: {},
        headers: { authorization: 'Bearer abc' },
        body: Buffer.alloc(0),
      },
      NOW,
    );
    expect(decision.allowed ? 'allowed' : decision.refusal.errorType).toBe('IncompleteSignatureException');
    expect(decision.allowed ? '' : decision.refusal.message).not.toContain('abc');
  });

  it("refuses a route the principal's allow list does not match, naming the principal and the resource", async () => {
    const decision = await authorizeRequest(
      policy,
      await signed({ path: '/api/v2/other_service/client_credentials' }),
      NOW,
    );
    expect(decision).toEqual({
      allowed: false,
      refusal: {
        statusCode: 403,
        errorType: 'AccessDeniedException',
        message:
          'User: arn:aws:sts::111122223333:assumed-role/app/session is not authorized to perform: execute-api:Invoke ' +
          'on resource: arn:aws:execute-api:us-east-1:000000000000:local/local/GET/api/v2/other_service/client_credentials',
      },
    });
  });

  it('refuses a method the allow list does not name', async () => {
    const decision = await authorizeRequest(policy, await signed({ method: 'DELETE' }), NOW);
    expect(decision.allowed ? 'allowed' : decision.refusal.errorType).toBe('AccessDeniedException');
  });

  it('lets a "*" pattern stand for any method and any rest of the path', async () => {
    const list = await authorizeRequest(
      policy,
      await signed({ path: '/api/v2/system/service', credentials: adminCredentials }),
      NOW,
    );
    const patch = await authorizeRequest(
      policy,
      await signed({
        method: 'PATCH',
        path: '/api/v2/system/service/x',
        body: '{}',
        credentials: adminCredentials,
      }),
      NOW,
    );
    const token = await authorizeRequest(policy, await signed({ credentials: adminCredentials }), NOW);
    expect([list.allowed, patch.allowed, token.allowed]).toEqual([true, true, false]);
  });
});

describe('allow entries', () => {
  it('are execute-api ARN tails: joined again, method and path are the entry itself', () => {
    for (const entry of [
      'GET/api/v2/x/client_credentials',
      '*/api/v2/system/*',
      '*',
      'GET/api/v2/???/client_credentials',
    ]) {
      const route = grantedRoute(entry);
      expect(`${route.method}${route.path}`).toBe(entry);
    }
  });

  it('match as IAM does: "*" across slashes and any method, "?" one character, case-sensitively', () => {
    const p = LocalIamPolicy.fromJson({
      region: 'us-east-1',
      account: '000000000000',
      principals: [
        { ...WORKLOAD, allow: ['*/api/v2/system/*', 'GET/api/v2/???/client_credentials'] },
        { ...ADMIN, allow: ['*'] },
      ],
    });
    const workload = p.principal(WORKLOAD.access_key_id);
    const everything = p.principal(ADMIN.access_key_id);
    if (!workload || !everything) throw new Error('principals missing');
    expect(p.allows(workload, 'DELETE', '/api/v2/system/service/a')).toBe(true);
    expect(p.allows(workload, 'GET', '/api/v2/abc/client_credentials')).toBe(true);
    expect(p.allows(workload, 'GET', '/api/v2/abcd/client_credentials')).toBe(false);
    expect(p.allows(workload, 'get', '/api/v2/abc/client_credentials')).toBe(false);
    expect(p.allows(workload, 'POST', '/api/v2/abc/client_credentials')).toBe(false);
    expect(p.allows(everything, 'PATCH', '/api/v2/anything/at/all')).toBe(true);
  });
});

describe('local IAM file', () => {
  it('names every problem without repeating a secret', () => {
    const attempt = () =>
      LocalIamPolicy.fromJson({
        region: 'nowhere',
        account: '12',
        principals: [WORKLOAD, { ...WORKLOAD, arn: 'alice' }],
      });
    expect(attempt).toThrow(/region: must be an AWS region.*account: must be a 12-digit account id/);
    expect(attempt).toThrow(/principals\.1\.arn: must be an IAM or STS principal ARN/);
    expect(attempt).toThrow(/principals\.1\.access_key_id: is listed twice/);
    expect(attempt).not.toThrow(new RegExp(WORKLOAD.secret_access_key));
  });
});
