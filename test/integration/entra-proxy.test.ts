/**
 * A broker in a VPC without a NAT gateway reaches Entra through an HTTPS proxy (HTTPS_PROXY, the construct's
 * `httpsProxy`). Real sockets: the Entra emulator, and a CONNECT proxy on loopback that tunnels bytes and records
 * where each tunnel went.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { clientSecretCredential } from '../../lib/credentials/client-secret';
import { EntraTokenClient } from '../../lib/entra-token-client';
import { IdentityProviderError } from '../../lib/errors';
import { type ConnectProxy, startConnectProxy } from '../fixtures/connect-proxy';
import { EntraEmulator } from '../fixtures/entra-emulator';

const TENANT = '33333333-3333-4333-8333-333333333333';
const CLIENT_ID = '11111111-1111-4111-8111-111111111111';
const SECRET = 'proxy-test-secret-value';

let emulator: EntraEmulator;
let proxy: ConnectProxy;

beforeAll(async () => {
  emulator = await EntraEmulator.start();
  emulator.registerApp({ tenantId: TENANT, clientId: CLIENT_ID, clientSecrets: [SECRET] });
  proxy = await startConnectProxy();
});

afterAll(async () => {
  await proxy.stop();
  await emulator.stop();
});

const request = () => ({
  tokenEndpoint: new URL(emulator.tokenEndpoint(TENANT)),
  clientId: CLIENT_ID,
  credential: clientSecretCredential(SECRET),
  scope: 'https://graph.microsoft.com/.default',
});

describe('the Entra client behind an HTTPS proxy', () => {
  it('sends the token request through a CONNECT tunnel to the authority', async () => {
    // Prepare
    const client = new EntraTokenClient({ timeoutMs: 5_000, httpsProxy: proxy.url });
    const before = emulator.requests.length;

    // Act
    const token = await client.requestToken(request());

    // Assess
    expect(token.tokenType).toBe('Bearer');
    expect(emulator.requests.length).toBe(before + 1);
    expect(proxy.tunnels).toContain(new URL(emulator.url).host);
  });

  it('reaches the authority directly without a proxy', async () => {
    const client = new EntraTokenClient({ timeoutMs: 5_000 });
    const tunnelsBefore = proxy.tunnels.length;

    await client.requestToken(request());

    expect(proxy.tunnels.length).toBe(tunnelsBefore);
  });

  it('fails as a retryable identity provider error, not a hang, when the proxy refuses connections', async () => {
    // A port that was just free: nothing listens there.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const client = new EntraTokenClient({ timeoutMs: 5_000, httpsProxy: `http://127.0.0.1:${port}` });

    const failure = await client.requestToken(request()).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(IdentityProviderError);
    expect(failure).toMatchObject({ retryable: true });
  });
});
