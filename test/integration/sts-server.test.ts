/**
 * The local STS (GetWebIdentityToken and its OIDC issuer), through the real @aws-sdk/client-sts client and over
 * real sockets: the broker's `federated` credential and the Entra emulator both rely on what is pinned here.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  GetWebIdentityTokenCommand,
  type GetWebIdentityTokenCommandInput,
  OutboundWebIdentityFederationDisabledException,
  STSClient,
} from '@aws-sdk/client-sts';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { DEFAULT_LOCAL_ROLE_ARN, type RunningStsServer, startStsServer } from '../../local/sts-server';

const ROLE_ARN = 'arn:aws:iam::123456789012:role/token-broker-token';
const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);

const servers: RunningStsServer[] = [];
const clients: STSClient[] = [];

async function start(options: Parameters<typeof startStsServer>[0] = {}) {
  const server = await startStsServer({ now: () => NOW, region: 'eu-west-1', ...options });
  servers.push(server);
  const client = new STSClient({
    endpoint: server.url,
    region: 'eu-west-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  clients.push(client);
  return { server, client };
}

function request(client: STSClient, input: Partial<GetWebIdentityTokenCommandInput> = {}) {
  return client.send(
    new GetWebIdentityTokenCommand({
      Audience: ['api://AzureADTokenExchange'],
      SigningAlgorithm: 'RS256',
      ...input,
    } as GetWebIdentityTokenCommandInput),
  );
}

afterAll(async () => {
  for (const client of clients) client.destroy();
  await Promise.all(servers.map((s) => s.close()));
});

it('issues an RS256 token that verifies through the issuer’s OIDC discovery, with the claims AWS documents', async () => {
  // Prepare
  const { server, client } = await start({ roleArn: ROLE_ARN });
  // Act
  const { WebIdentityToken, Expiration } = await request(client, { DurationSeconds: 120 });
  const discovery = (await (await fetch(`${server.issuer}/.well-known/openid-configuration`)).json()) as {
    issuer: string;
    jwks_uri: string;
  };
  const { payload, protectedHeader } = await jwtVerify(
    WebIdentityToken as string,
    createRemoteJWKSet(new URL(discovery.jwks_uri)),
    { issuer: server.issuer, audience: 'api://AzureADTokenExchange', currentDate: new Date(NOW) },
  );
  // Assess
  expect(discovery.issuer).toBe(server.issuer);
  expect(server.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  expect(protectedHeader.alg).toBe('RS256');
  expect(payload.sub).toBe(ROLE_ARN);
  expect(payload.iat).toBe(NOW / 1000);
  expect(payload.exp).toBe(NOW / 1000 + 120);
  expect(typeof payload.jti).toBe('string');
  expect(payload['https://sts.amazonaws.com/']).toEqual({
    aws_account: '123456789012',
    source_region: 'eu-west-1',
  });
  expect(Expiration?.getTime()).toBe(NOW + 120_000);
});

it('names the default local role and lasts 300 seconds when no duration is asked', async () => {
  const { client } = await start();
  const { WebIdentityToken } = await request(client);
  const payload = JSON.parse(
    Buffer.from((WebIdentityToken as string).split('.')[1] as string, 'base64url').toString(),
  );
  expect(payload.sub).toBe(DEFAULT_LOCAL_ROLE_ARN);
  expect(payload.exp - payload.iat).toBe(300);
});

it('puts several audiences and the request tags into the token', async () => {
  const { client } = await start();
  const { WebIdentityToken } = await request(client, {
    Audience: ['a', 'b'],
    Tags: [{ Key: 'service', Value: 'graph' }],
  });
  const payload = JSON.parse(
    Buffer.from((WebIdentityToken as string).split('.')[1] as string, 'base64url').toString(),
  );
  expect(payload.aud).toEqual(['a', 'b']);
  expect(payload['https://sts.amazonaws.com/'].request_tags).toEqual({ service: 'graph' });
});

it.each([
  ['no audience', { Audience: [] }, /Audience/],
  ['an unsupported signing algorithm', { SigningAlgorithm: 'HS256' }, /SigningAlgorithm/],
  ['a duration below 60 seconds', { DurationSeconds: 59 }, /DurationSeconds/],
  ['a duration above 3600 seconds', { DurationSeconds: 3601 }, /DurationSeconds/],
])('refuses %s with a ValidationError', async (_case, input, message) => {
  const { client } = await start();
  await expect(request(client, input as Partial<GetWebIdentityTokenCommandInput>)).rejects.toMatchObject({
    name: 'ValidationError',
    message: expect.stringMatching(message),
  });
});

it('answers OutboundWebIdentityFederationDisabledException while federation is not enabled', async () => {
  const { client } = await start({ federationDisabled: true });
  await expect(request(client)).rejects.toBeInstanceOf(OutboundWebIdentityFederationDisabledException);
});

it('keeps its signing key across restarts over the same data directory', async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'sts-server-'));
  try {
    const first = await start({ dataDir });
    const token = (await request(first.client)).WebIdentityToken as string;
    await first.server.close();
    const second = await start({ dataDir });
    const jwks = createRemoteJWKSet(new URL(`${second.server.issuer}/.well-known/jwks.json`));
    await expect(jwtVerify(token, jwks, { currentDate: new Date(NOW) })).resolves.toBeDefined();
    const again = (await request(second.client)).WebIdentityToken as string;
    expect(decodeProtectedHeader(again).kid).toBe(decodeProtectedHeader(token).kid);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
