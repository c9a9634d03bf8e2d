/**
 * The Entra emulator's authorization code flow, over real sockets: the broker's delegated-token tests trust it
 * to behave like Entra (single-use codes, PKCE, rotation, signed id_tokens), so those behaviours are pinned here.
 */
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { EntraEmulator } from '../fixtures/entra-emulator';
import { consentWithoutBrowser, type EmulatorUser } from '../fixtures/entra-emulator-delegated';

const TENANT = '7a1c2a9e-4b7d-4e21-9c3a-0d5e8f7a1b2c';
const CLIENT_ID = '1b9d7c4e-3a2f-4c61-8e5d-1f2a3b4c5d6e';
const SECRET = 'delegated-emulator-secret~value';
const REDIRECT = 'http://127.0.0.1:9/api/v2/graph/sso';
const SCOPE = 'openid profile offline_access https://graph.microsoft.com/User.Read';
const ADELE: EmulatorUser = {
  tenantId: TENANT,
  oid: '3c1b7e0a-8f0e-4d3b-9a49-6f1c2d3e4f50',
  preferredUsername: 'adele@contoso.onmicrosoft.com',
  name: 'Adele Vance',
};
const ALEX: EmulatorUser = {
  tenantId: TENANT,
  oid: '4d2c8f1b-9a1f-4e4c-8b5a-7a2d3e4f5061',
  preferredUsername: 'alex@contoso.onmicrosoft.com',
  name: 'Alex Wilber',
};

let emulator: EntraEmulator;
let clock = Date.now();

beforeAll(async () => {
  emulator = await EntraEmulator.start({
    now: () => clock,
    apps: [{ tenantId: TENANT, clientId: CLIENT_ID, clientSecrets: [SECRET], redirectUris: [REDIRECT] }],
  });
  emulator.delegated.addUser(ADELE);
  emulator.delegated.addUser(ALEX);
});

afterAll(() => emulator.stop());

beforeEach(() => {
  clock = Date.now();
});

/** A PKCE pair as a client makes one (RFC 7636, S256). */
function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorizeUrl(params: Record<string, string>): string {
  const url = new URL(`${emulator.authorityUrl(TENANT)}/oauth2/v2.0/authorize`);
  const defaults = {
    client_id: CLIENT_ID,
    response_type: 'code',
    redirect_uri: REDIRECT,
    scope: SCOPE,
    response_mode: 'query',
  };
  for (const [k, v] of Object.entries({ ...defaults, ...params })) url.searchParams.set(k, v);
  return url.href;
}

async function token(
  form: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(emulator.tokenEndpoint(TENANT), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: CLIENT_ID, client_secret: SECRET, ...form }).toString(),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Consents as `user` and returns the code and the verifier that goes with it. */
async function codeFor(
  user: EmulatorUser,
  extra: Record<string, string> = {},
): Promise<{ code: string; verifier: string }> {
  const { verifier, challenge } = pkce();
  const landing = await consentWithoutBrowser(
    authorizeUrl({
      state: 's1',
      nonce: 'n1',
      code_challenge: challenge,
      code_challenge_method: 'S256',
      ...extra,
    }),
    { userOid: user.oid },
  );
  const code = landing.searchParams.get('code');
  if (!code) throw new Error(`no code: ${landing.searchParams.get('error')}`);
  return { code, verifier };
}

const redeem = (code: string, verifier: string, extra: Record<string, string> = {}) =>
  token({
    grant_type: 'authorization_code',
    code,
    code_verifier: verifier,
    redirect_uri: REDIRECT,
    scope: SCOPE,
    ...extra,
  });

function claimsOf(jwt: unknown): Record<string, unknown> {
  return JSON.parse(Buffer.from(String(jwt).split('.')[1] as string, 'base64url').toString('utf8'));
}

function errorCode(body: Record<string, unknown>): number {
  return (body.error_codes as number[])[0] as number;
}

describe('Entra emulator authorize endpoint', () => {
  it('lists the tenant users on a page whose form redirects to the redirect URI with a code and the state', async () => {
    const page = await fetch(authorizeUrl({ state: 'abc' }));
    const html = await page.text();
    expect(page.status).toBe(200);
    expect(html).toContain(ADELE.preferredUsername);
    expect(html).toContain(ALEX.preferredUsername);

    const landing = await consentWithoutBrowser(authorizeUrl({ state: 'abc' }), { userOid: ALEX.oid });

    expect(`${landing.origin}${landing.pathname}`).toBe(REDIRECT);
    expect(landing.searchParams.get('state')).toBe('abc');
    expect(landing.searchParams.get('code')).toMatch(/^\S{40,}$/);
  });

  it('redirects with error=access_denied and the state when the user refuses', async () => {
    const landing = await consentWithoutBrowser(authorizeUrl({ state: 'xyz' }), { accept: false });

    expect(landing.searchParams.get('error')).toBe('access_denied');
    expect(landing.searchParams.get('state')).toBe('xyz');
    expect(landing.searchParams.get('code')).toBeNull();
  });

  it('refuses an unregistered redirect URI on its own page, without redirecting (AADSTS50011)', async () => {
    const page = await fetch(authorizeUrl({ redirect_uri: 'https://attacker.example/cb' }), {
      redirect: 'manual',
    });

    expect(page.status).toBe(400);
    expect(page.headers.get('location')).toBeNull();
    expect(await page.text()).toContain('AADSTS50011');
  });

  it('preselects the user named by login_hint', async () => {
    const html = await (await fetch(authorizeUrl({ login_hint: ALEX.preferredUsername }))).text();

    expect(html).toMatch(new RegExp(`value="${ALEX.oid}" checked`));
    expect(html).not.toMatch(new RegExp(`value="${ADELE.oid}" checked`));
  });
});

describe('Entra emulator authorization_code grant', () => {
  it('redeems a code for a delegated access token with scp, a refresh token and an id_token with the nonce', async () => {
    const { code, verifier } = await codeFor(ADELE);

    const { status, body } = await redeem(code, verifier);

    expect(status).toBe(200);
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 3599 });
    expect(claimsOf(body.access_token)).toMatchObject({
      scp: 'User.Read',
      oid: ADELE.oid,
      tid: TENANT,
      appid: CLIENT_ID,
    });
    expect(body.refresh_token).toEqual(expect.any(String));
    expect(claimsOf(body.id_token)).toMatchObject({
      aud: CLIENT_ID,
      iss: `${emulator.url}/${TENANT}/v2.0`,
      nonce: 'n1',
      oid: ADELE.oid,
      tid: TENANT,
      preferred_username: ADELE.preferredUsername,
    });
  });

  it('signs id_tokens RS256 with a key published in the JWKS named by the discovery document', async () => {
    const { code, verifier } = await codeFor(ADELE);
    const { body } = await redeem(code, verifier);
    const discovery = (await (await fetch(emulator.openIdConfigurationUrl(TENANT))).json()) as Record<
      string,
      string
    >;
    const jwks = (await (await fetch(discovery.jwks_uri as string)).json()) as {
      keys: Array<{ kid: string }>;
    };

    const [header, payload, signature] = String(body.id_token).split('.') as [string, string, string];
    const { kid, alg } = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
    const jwk = jwks.keys.find((k) => k.kid === kid);
    const valid = verify(
      'sha256',
      Buffer.from(`${header}.${payload}`),
      createPublicKey({ key: jwk as never, format: 'jwk' }),
      Buffer.from(signature, 'base64url'),
    );

    expect(alg).toBe('RS256');
    expect(valid).toBe(true);
  });

  it('redeems a code once: the second redemption answers invalid_grant AADSTS54005', async () => {
    const { code, verifier } = await codeFor(ADELE);
    await redeem(code, verifier);

    const { status, body } = await redeem(code, verifier);

    expect(status).toBe(400);
    expect(body.error).toBe('invalid_grant');
    expect(errorCode(body)).toBe(54005);
  });

  it('refuses a code verifier that does not match the challenge (AADSTS501481)', async () => {
    const { code } = await codeFor(ADELE);

    const { status, body } = await redeem(code, pkce().verifier);

    expect(status).toBe(400);
    expect(errorCode(body)).toBe(501481);
  });

  it('refuses a code older than 10 minutes (AADSTS70008)', async () => {
    const { code, verifier } = await codeFor(ADELE);
    clock += 10 * 60_000 + 1000;

    const { body } = await redeem(code, verifier);

    expect(body.error).toBe('invalid_grant');
    expect(errorCode(body)).toBe(70008);
  });

  it('refuses a redemption whose redirect_uri differs from the authorization request', async () => {
    const { code, verifier } = await codeFor(ADELE);

    const { body } = await redeem(code, verifier, { redirect_uri: 'http://127.0.0.1:9/other' });

    expect(body.error).toBe('invalid_grant');
  });

  it('refuses a code without the client secret (invalid_client)', async () => {
    const { code, verifier } = await codeFor(ADELE);

    const { status, body } = await redeem(code, verifier, { client_secret: 'wrong-secret-value' });

    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
  });

  it('issues the queued id_token flaw once, then valid id_tokens again', async () => {
    emulator.delegated.flawNextIdToken('wrong-nonce');
    const first = await codeFor(ADELE);
    const second = await codeFor(ADELE);

    const flawed = await redeem(first.code, first.verifier);
    const sound = await redeem(second.code, second.verifier);

    expect(claimsOf(flawed.body.id_token).nonce).not.toBe('n1');
    expect(claimsOf(sound.body.id_token).nonce).toBe('n1');
  });
});

describe('Entra emulator refresh_token grant', () => {
  async function refreshTokenFor(user: EmulatorUser): Promise<string> {
    const { code, verifier } = await codeFor(user);
    return String((await redeem(code, verifier)).body.refresh_token);
  }
  const refresh = (refreshToken: string) =>
    token({ grant_type: 'refresh_token', refresh_token: refreshToken, scope: SCOPE });

  it('rotates: the new refresh token works and the used one stops working', async () => {
    const first = await refreshTokenFor(ADELE);

    const rotated = await refresh(first);
    const again = await refresh(first);
    const next = await refresh(String(rotated.body.refresh_token));

    expect(rotated.status).toBe(200);
    expect(rotated.body.refresh_token).not.toBe(first);
    expect(claimsOf(rotated.body.access_token).oid).toBe(ADELE.oid);
    expect(again.status).toBe(400);
    expect(again.body.error).toBe('invalid_grant');
    expect(next.status).toBe(200);
  });

  it('counts refresh redemptions', async () => {
    const first = await refreshTokenFor(ADELE);
    const before = emulator.delegated.refreshRedemptions;

    await refresh(first);

    expect(emulator.delegated.refreshRedemptions).toBe(before + 1);
  });

  it('answers AADSTS50173 for the refresh tokens of a user revoked over the control endpoint', async () => {
    const adeles = await refreshTokenFor(ADELE);
    const alexs = await refreshTokenFor(ALEX);

    const revoke = await fetch(`${emulator.url}/_emulator/users/${ADELE.oid}/revoke`, { method: 'POST' });
    const revoked = await refresh(adeles);
    const untouched = await refresh(alexs);

    expect(revoke.status).toBe(200);
    expect(revoked.body.error).toBe('invalid_grant');
    expect(errorCode(revoked.body)).toBe(50173);
    expect(untouched.status).toBe(200);
  });

  it('answers AADSTS70008 for the refresh tokens of a user expired over the control endpoint', async () => {
    const adeles = await refreshTokenFor(ADELE);

    await fetch(`${emulator.url}/_emulator/users/${ADELE.oid}/expire`, { method: 'POST' });
    const { body } = await refresh(adeles);

    expect(errorCode(body)).toBe(70008);
  });

  it('adds users over the control endpoint', async () => {
    const megan = {
      ...ADELE,
      oid: '5e3d9a2c-0b2a-4f5d-9c6b-8b3e4f506172',
      preferredUsername: 'megan@contoso.onmicrosoft.com',
      name: 'Megan Bowen',
    };

    const added = await fetch(`${emulator.url}/_emulator/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(megan),
    });
    const html = await (await fetch(authorizeUrl({}))).text();

    expect(added.status).toBe(204);
    expect(html).toContain('megan@contoso.onmicrosoft.com');
  });
});
