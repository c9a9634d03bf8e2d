import { createHash } from 'node:crypto';
import { apiGatewayEvent } from '../fixtures/apigw-event';
import { BrokerHarness } from '../fixtures/broker-harness';

/** The structured log lines the handlers wrote, parsed (POWERTOOLS_DEV pretty-prints JSON). */
function auditLines(h: BrokerHarness, message: string): Array<Record<string, unknown>> {
  return h.logs
    .map((line) => {
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch {
        return undefined;
      }
    })
    .filter((l): l is Record<string, unknown> => l !== undefined && l.message === message);
}

describe('audit trail', () => {
  let h: BrokerHarness;
  const identity = {
    userArn: 'arn:aws:sts::123456789012:assumed-role/workload/job-1',
    caller: 'AROAEXAMPLE:job-1',
    accountId: '123456789012',
  };

  beforeAll(async () => {
    h = await BrokerHarness.start();
  });
  afterAll(async () => {
    await h.close();
  });

  it('logs one audit line per token served with the caller, outcome, expiry and a SHA-256 fingerprint, never the token', async () => {
    await h.createService('audited');
    const event = apiGatewayEvent({
      method: 'GET',
      resource: '/api/v2/{service}/client_credentials',
      path: '/api/v2/audited/client_credentials',
      pathParameters: { service: 'audited' },
      identity,
    });
    const first = await h.raw('token', event);
    await h.raw('token', {
      ...event,
      requestContext: { ...event.requestContext, requestId: 'second-request' },
    });

    const lines = auditLines(h, 'audit: token served');
    expect(lines).toHaveLength(2);
    const fingerprint = createHash('sha256').update(first.body.access_token).digest('hex').slice(0, 16);
    expect(lines[0]).toMatchObject({
      serviceName: 'audited',
      scope: 'https://graph.microsoft.com/.default',
      cache: 'miss',
      expiresAt: first.body.expires_at,
      tokenSha256: fingerprint,
      caller: { ...identity, sourceIp: '127.0.0.1', requestId: event.requestContext.requestId },
    });
    expect(lines[1]).toMatchObject({
      cache: 'hit',
      tokenSha256: fingerprint,
      caller: { requestId: 'second-request' },
    });
    expect(JSON.stringify(lines)).not.toContain(first.body.access_token);
  });

  it('audits an administrative change with the caller and the names of the fields changed, never values', async () => {
    await h.createService('changed');
    const patch = apiGatewayEvent({
      method: 'PATCH',
      resource: '/api/v2/system/service/{name}',
      path: '/api/v2/system/service/changed',
      pathParameters: { name: 'changed' },
      body: { label: 'New label', config: { client_secret: 'rotated-secret-value' } },
      identity,
    });
    const res = await h.raw('admin', patch);
    expect(res.status).toBe(200);
    const [line] = auditLines(h, 'audit: service updated');
    expect(line).toMatchObject({
      serviceName: 'changed',
      fields: expect.arrayContaining(['label', 'config.client_secret']),
      caller: { userArn: identity.userArn },
    });
    expect(JSON.stringify(line)).not.toContain('rotated-secret-value');
    expect(JSON.stringify(line)).not.toContain('New label');
  });
});
