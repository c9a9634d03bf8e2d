import { matchRoute } from '../../lib/routes';

describe('matchRoute', () => {
  it('matches /api/v2/system/service to the admin collection route', () => {
    const match = matchRoute('/api/v2/system/service');
    expect(match?.route.resource).toBe('/api/v2/system/service');
    expect(match?.route.function).toBe('admin');
    expect(match?.pathParameters).toEqual({});
  });

  it('matches /api/v2/x/client_credentials to the token route with service=x', () => {
    const match = matchRoute('/api/v2/x/client_credentials');
    expect(match?.route.resource).toBe('/api/v2/{service}/client_credentials');
    expect(match?.route.function).toBe('token');
    expect(match?.pathParameters).toEqual({ service: 'x' });
  });

  it('matches /api/v2/system/service/{name} to the admin item route', () => {
    const match = matchRoute('/api/v2/system/service/graph');
    expect(match?.route.resource).toBe('/api/v2/system/service/{name}');
    expect(match?.pathParameters).toEqual({ name: 'graph' });
  });

  it('matches /api/v2/system/service/client_credentials to the admin item, not the token route', () => {
    const match = matchRoute('/api/v2/system/service/client_credentials');
    expect(match?.route.function).toBe('admin');
    expect(match?.pathParameters).toEqual({ name: 'client_credentials' });
  });

  it('treats "system" in the service position of the token route as a parameter value', () => {
    expect(matchRoute('/api/v2/system/client_credentials')?.pathParameters).toEqual({ service: 'system' });
  });

  it.each([
    ['an unknown path', '/nope'],
    ['the API root', '/api/v2'],
    ['an extra segment', '/api/v2/x/client_credentials/extra'],
    ['a missing segment', '/api/v2/client_credentials'],
    ['a different literal', '/api/v2/x/authorization_code'],
    ['another letter case', '/API/v2/system/service'],
    ['the empty path', '/'],
  ])('answers undefined for %s', (_what, path) => {
    expect(matchRoute(path)).toBeUndefined();
  });

  it('percent-decodes parameter values', () => {
    expect(matchRoute('/api/v2/my%2Dservice/client_credentials')?.pathParameters).toEqual({
      service: 'my-service',
    });
  });

  it('decodes an encoded slash into the parameter instead of splitting on it', () => {
    expect(matchRoute('/api/v2/a%2Fb/client_credentials')?.pathParameters).toEqual({ service: 'a/b' });
  });

  it('answers undefined for a malformed percent-encoding in a parameter', () => {
    expect(matchRoute('/api/v2/bad%E0%A4%A/client_credentials')).toBeUndefined();
  });
});
