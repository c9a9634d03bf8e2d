/**
 * `npm start` with TOKEN_BROKER_LOCAL_IAM, like API Gateway: the consent callback is the one route a browser
 * reaches unsigned; every other route of the authorization code flow still needs a SigV4 signature and a grant.
 */
import { IamBroker, SERVICE } from '../fixtures/iam-broker';

let iam: IamBroker;

beforeAll(async () => {
  iam = await IamBroker.start([]);
});

afterAll(async () => {
  await iam?.close();
});

it('lets an unsigned browser reach the consent callback (it answers its own 400 page for an unknown state)', async () => {
  const res = await fetch(`${iam.url}/api/v2/${SERVICE}/sso?state=unknown-state&code=x`);

  expect(res.status).toBe(400);
  expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
  expect(await res.text()).toContain('already used, or is not known');
});

it.each([
  ['GET', `/api/v2/${SERVICE}/authorize?user=alice`],
  ['GET', `/api/v2/${SERVICE}/user_token?user=alice`],
  ['DELETE', `/api/v2/${SERVICE}/user_token?user=alice`],
  ['GET', `/api/v2/system/service/${SERVICE}/users`],
])('refuses an unsigned %s %s with "Missing Authentication Token"', async (method, path) => {
  const res = await iam.broker.request(method, path);

  expect(res.status).toBe(403);
  expect(res.body).toEqual({ message: 'Missing Authentication Token' });
});
