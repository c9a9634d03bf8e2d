/**
 * The authorization code flow's core (lib/authorization-code/) against real servers: DynamoDB Local, the local
 * KMS and Secrets Manager servers and the Entra emulator. The browser's part is played over HTTP by
 * `consentWithoutBrowser`; the real-browser test drives the same flow through the HTTP API.
 */
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import {
  ConsentFailedError,
  GrantNotEnabledError,
  UserConsentRequiredError,
  ValidationError,
} from '../../lib/errors';
import {
  API_BASE_URL,
  CALLER,
  type DelegatedInstance,
  DelegatedTestBed,
  USER_SCOPE,
} from '../fixtures/delegated-test-bed';
import { consentWithoutBrowser } from '../fixtures/entra-emulator-delegated';

const REQUEST = { caller: CALLER, apiBaseUrl: API_BASE_URL };

let t: DelegatedTestBed;
let broker: DelegatedInstance;

beforeAll(async () => {
  t = await DelegatedTestBed.start();
  await t.createService('mail', { return_to_hosts: ['app.example.com'] });
  await t.createService('files');
  broker = t.instance();
});

afterAll(() => t.close());

const adele = () => t.users[0] as (typeof t.users)[number];
const alex = () => t.users[1] as (typeof t.users)[number];

/** Runs the consent for `userKey` as `user` and returns the callback parameters the browser would bring. */
async function consentParams(
  service: string,
  userKey: string,
  options: { userOid?: string; accept?: boolean; returnTo?: string } = {},
): Promise<Record<string, string>> {
  const start = await broker.consent.start(
    service,
    userKey,
    REQUEST,
    options.returnTo ? { returnTo: options.returnTo } : {},
  );
  const landing = await consentWithoutBrowser(start.authorizationUrl, {
    userOid: options.userOid ?? adele().oid,
    accept: options.accept ?? true,
  });
  return Object.fromEntries(landing.searchParams);
}

async function connect(service: string, userKey: string, userOid = adele().oid) {
  return broker.consent.complete(service, await consentParams(service, userKey, { userOid }));
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a failure');
}

describe('starting a consent', () => {
  it('builds an authorize URL with PKCE S256, a 256-bit state, a nonce, response_mode=query and the broker callback', async () => {
    const start = await broker.consent.start('mail', 'u-start', REQUEST, {
      loginHint: 'adele@contoso.onmicrosoft.com',
    });
    const url = new URL(start.authorizationUrl);
    const p = url.searchParams;

    expect(`${url.origin}${url.pathname}`).toBe(
      `${t.bed.emulator.authorityUrl(t.bed.app.tenantId)}/oauth2/v2.0/authorize`,
    );
    expect(p.get('response_type')).toBe('code');
    expect(p.get('code_challenge_method')).toBe('S256');
    expect(p.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(p.get('state') as string, 'base64url').length).toBeGreaterThanOrEqual(16);
    expect(p.get('nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(p.get('response_mode')).toBe('query');
    expect(p.get('redirect_uri')).toBe(t.redirectUri('mail'));
    expect(p.get('scope')?.split(' ')).toEqual(
      expect.arrayContaining(['openid', 'offline_access', USER_SCOPE]),
    );
    expect(p.get('login_hint')).toBe('adele@contoso.onmicrosoft.com');
    expect(start.stateExpiresAt).toBe(t.clock.now() + 10 * 60_000);
  });

  it('refuses a return_to whose host the service does not allow', async () => {
    const error = await failure(
      broker.consent.start('mail', 'u1', REQUEST, { returnTo: 'https://evil.example/x' }),
    );

    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toContain('return_to_hosts');
  });

  it('refuses a service that only serves client credentials', async () => {
    await t.bed.createService('apponly');

    const error = await failure(broker.consent.start('apponly', 'u1', REQUEST));

    expect(error).toBeInstanceOf(GrantNotEnabledError);
  });
});

describe('the consent callback', () => {
  it('stores the user with oid, tid and preferred_username, and the refresh token only sealed', async () => {
    const result = await connect('mail', 'user-1');
    const scan = await t.bed.setupDynamoDb.send(new ScanCommand({ TableName: t.userGrantsTable }));
    const stored = JSON.stringify(scan.Items);

    expect(result.grant).toMatchObject({
      userKey: 'user-1',
      oid: adele().oid,
      tid: t.bed.app.tenantId,
      preferredUsername: adele().preferredUsername,
    });
    expect(stored).toContain(adele().oid);
    expect(stored).not.toMatch(/1\.AR[A-Za-z0-9_-]{40}/); // the emulator's refresh tokens start 1.AR
  });

  it('sends the browser back to an allowed return_to', async () => {
    const params = await consentParams('mail', 'user-rt', { returnTo: 'https://app.example.com/done' });

    const result = await broker.consent.complete('mail', params);

    expect(result.returnTo).toBe('https://app.example.com/done');
  });

  it('accepts a state once: the replay is refused as already used', async () => {
    const params = await consentParams('mail', 'user-replay');
    await broker.consent.complete('mail', params);

    const replay = await failure(broker.consent.complete('mail', params));

    expect(replay).toBeInstanceOf(ConsentFailedError);
    expect((replay as ConsentFailedError).reason).toBe('state_unknown');
  });

  it('refuses a state older than 10 minutes', async () => {
    const params = await consentParams('mail', 'user-late');
    t.clock.advance(10 * 60_000 + 1);

    const error = await failure(broker.consent.complete('mail', params));

    expect((error as ConsentFailedError).reason).toBe('state_expired');
  });

  it('refuses a state started for another service, and it cannot be used afterwards either', async () => {
    const params = await consentParams('mail', 'user-cross');

    const cross = await failure(broker.consent.complete('files', params));
    const own = await failure(broker.consent.complete('mail', params));

    expect((cross as ConsentFailedError).reason).toBe('state_other_service');
    expect((own as ConsentFailedError).reason).toBe('state_unknown');
  });

  it('refuses a code obtained with another consent’s PKCE challenge (verifier mismatch, AADSTS501481)', async () => {
    const victim = await consentParams('mail', 'user-pkce');
    const attacker = await broker.consent.start('mail', 'user-pkce', REQUEST);

    const error = await failure(
      broker.consent.complete('mail', {
        code: victim.code as string,
        state: new URL(attacker.authorizationUrl).searchParams.get('state') as string,
      }),
    );

    expect((error as ConsentFailedError).reason).toBe('redemption_failed');
    expect((error as Error).message).toContain('AADSTS501481');
    expect(await broker.grants.get('mail', 'user-pkce')).toBeUndefined();
  });

  it.each([
    ['wrong-nonce', 'nonce'],
    ['wrong-audience', 'aud'],
    ['wrong-signature', 'signature'],
    ['expired', 'exp'],
  ] as const)('refuses an id_token with a %s and stores nothing', async (flaw, named) => {
    t.bed.emulator.delegated.flawNextIdToken(flaw);
    const params = await consentParams('mail', `user-${flaw}`);

    const error = await failure(broker.consent.complete('mail', params));

    expect((error as ConsentFailedError).reason).toBe('id_token_invalid');
    expect((error as Error).message).toContain(named);
    expect(await broker.grants.get('mail', `user-${flaw}`)).toBeUndefined();
  });

  it('reports a refused consent (error=access_denied) without storing anything', async () => {
    const params = await consentParams('mail', 'user-denied', { accept: false });

    const error = await failure(broker.consent.complete('mail', params));

    expect(params.error).toBe('access_denied');
    expect((error as ConsentFailedError).reason).toBe('authorization_denied');
    expect(await broker.grants.get('mail', 'user-denied')).toBeUndefined();
  });
});

describe('delegated user tokens', () => {
  it('answers 401 with reason not_connected and a fresh authorization_url for a user who never consented', async () => {
    const error = await failure(broker.userTokens.getUserToken('mail', 'nobody', REQUEST));

    expect(error).toBeInstanceOf(UserConsentRequiredError);
    const context = (error as UserConsentRequiredError).context as Record<string, string>;
    expect(context.reason).toBe('not_connected');
    expect(new URL(context.authorization_url as string).searchParams.get('code_challenge_method')).toBe(
      'S256',
    );
  });

  it('redeems the refresh token once, then serves the cached token', async () => {
    await connect('mail', 'user-cache');
    const before = t.bed.emulator.delegated.refreshRedemptions;

    const first = await broker.userTokens.getUserToken('mail', 'user-cache', REQUEST);
    const second = await t.instance().userTokens.getUserToken('mail', 'user-cache', REQUEST);

    expect(first.cache).toBe('miss');
    expect(second.cache).toBe('hit');
    expect(second.token.accessToken).toBe(first.token.accessToken);
    expect(first.token.scope).toBe(USER_SCOPE);
    expect(first.grant.oid).toBe(adele().oid);
    expect(t.bed.emulator.delegated.refreshRedemptions).toBe(before + 1);
  });

  it('stores the rotated refresh token: after expiry the next redemption uses the new one and succeeds', async () => {
    await connect('mail', 'user-rotate');
    const first = await broker.userTokens.getUserToken('mail', 'user-rotate', REQUEST);
    t.clock.advance(3600_000);

    // The emulator refuses a used refresh token, so this only succeeds with the rotated one.
    const second = await t.instance().userTokens.getUserToken('mail', 'user-rotate', REQUEST);
    t.clock.advance(3600_000);
    const third = await broker.userTokens.getUserToken('mail', 'user-rotate', REQUEST);

    expect(second.cache).toBe('miss');
    expect(second.token.accessToken).not.toBe(first.token.accessToken);
    expect(third.cache).toBe('miss');
    expect((await broker.grants.get('mail', 'user-rotate'))?.generation).toBe(3);
  });

  it('costs one refresh redemption for 64 concurrent calls across 2 instances at expiry, and every caller gets the token', async () => {
    await connect('mail', 'user-herd');
    await broker.userTokens.getUserToken('mail', 'user-herd', REQUEST);
    t.clock.advance(3600_000);
    const instances = [t.instance(), t.instance()];
    const before = t.bed.emulator.delegated.refreshRequests;

    const results = await Promise.all(
      Array.from({ length: 64 }, (_, i) =>
        (instances[i % 2] as DelegatedInstance).userTokens.getUserToken('mail', 'user-herd', REQUEST),
      ),
    );

    expect(t.bed.emulator.delegated.refreshRequests).toBe(before + 1);
    expect(new Set(results.map((r) => r.token.accessToken)).size).toBe(1);
  });

  it('answers 401 with reason grant_revoked and a fresh authorization_url for a revoked refresh token, and forgets it', async () => {
    await connect('files', 'user-revoked', alex().oid);
    t.bed.emulator.delegated.revokeUser(alex().oid);

    const error = await failure(broker.userTokens.getUserToken('files', 'user-revoked', REQUEST));
    const after = await failure(broker.userTokens.getUserToken('files', 'user-revoked', REQUEST));

    const context = (error as UserConsentRequiredError).context as Record<string, string>;
    expect(error).toBeInstanceOf(UserConsentRequiredError);
    expect(context.reason).toBe('grant_revoked');
    expect(context.authorization_url).toContain('/oauth2/v2.0/authorize?');
    expect(await broker.grants.get('files', 'user-revoked')).toBeUndefined();
    expect(((after as UserConsentRequiredError).context as Record<string, string>).reason).toBe(
      'not_connected',
    );
  });

  it('answers reason refresh_token_expired for an expired refresh token', async () => {
    await connect('files', 'user-expired', alex().oid);
    t.bed.emulator.delegated.expireUser(alex().oid);

    const error = await failure(broker.userTokens.getUserToken('files', 'user-expired', REQUEST));

    expect(((error as UserConsentRequiredError).context as Record<string, string>).reason).toBe(
      'refresh_token_expired',
    );
  });

  it('forgets a user: grant and cached tokens are gone, the next call needs a new consent', async () => {
    await connect('mail', 'user-forget');
    await broker.userTokens.getUserToken('mail', 'user-forget', REQUEST);

    await broker.userTokens.forget('mail', 'user-forget');
    const error = await failure(t.instance().userTokens.getUserToken('mail', 'user-forget', REQUEST));

    expect(((error as UserConsentRequiredError).context as Record<string, string>).reason).toBe(
      'not_connected',
    );
  });

  it('lists connected users without any token', async () => {
    await connect('files', 'user-listed', alex().oid);

    const users = await broker.userTokens.listUsers('files');

    const listed = users.find((u) => u.key === 'user-listed');
    expect(listed).toMatchObject({
      oid: alex().oid,
      preferred_username: alex().preferredUsername,
      tid: t.bed.app.tenantId,
    });
    expect(listed?.connected_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Object.keys(listed ?? {}).sort()).toEqual([
      'connected_at',
      'key',
      'oid',
      'preferred_username',
      'tid',
    ]);
  });

  it('refuses a scope the service does not list', async () => {
    await connect('mail', 'user-scope');

    const error = await failure(
      broker.userTokens.getUserToken('mail', 'user-scope', REQUEST, {
        scope: 'https://vault.azure.net/user_impersonation',
      }),
    );

    expect(error).toBeInstanceOf(ValidationError);
  });
});
