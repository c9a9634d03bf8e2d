import {
  adminRoutes,
  adminRoutesAnyMethod,
  apiDocsRoutes,
  type ExecuteApiRoute,
  executeApiTail,
  routeMatches,
  tokenRoutes,
  tokenRoutesOfAnyService,
  userTokenRoutes,
} from '../../lib/execute-api-grants';

describe('execute-api grants', () => {
  it("names every method of one service's client_credentials route", () => {
    expect(tokenRoutes('graph').map(executeApiTail).sort()).toEqual([
      'DELETE/api/v2/graph/client_credentials',
      'GET/api/v2/graph/client_credentials',
      'POST/api/v2/graph/client_credentials',
    ]);
  });

  it('names only GET for a read-only token grant', () => {
    expect(tokenRoutes('graph', { readOnly: true }).map(executeApiTail)).toEqual([
      'GET/api/v2/graph/client_credentials',
    ]);
  });

  it('refuses wildcards, paths, upper case and reserved names as the service of a token grant', () => {
    for (const name of ['*', 'gra?h', 'graph/*', 'Graph', 'system', 'api_docs', '']) {
      expect(() => tokenRoutes(name)).toThrow(/is not a valid service name/);
    }
  });

  it('names the admin routes with one path segment wildcard for the service name (certificates included), the API docs and the federation facts', () => {
    expect(adminRoutes().map(executeApiTail).sort()).toEqual([
      'DELETE/api/v2/system/service/*',
      'GET/api/v2/api_docs',
      'GET/api/v2/system/federation',
      'GET/api/v2/system/service',
      'GET/api/v2/system/service/*',
      'GET/api/v2/system/service/*/certificate',
      'GET/api/v2/system/service/*/users',
      'PATCH/api/v2/system/service/*',
      'POST/api/v2/system/service',
      'POST/api/v2/system/service/*/certificate',
    ]);
  });

  it('names the token routes of any service for a resource policy, every method', () => {
    expect(tokenRoutesOfAnyService().map(executeApiTail).sort()).toEqual([
      'DELETE/api/v2/*/client_credentials',
      'GET/api/v2/*/client_credentials',
      'POST/api/v2/*/client_credentials',
    ]);
  });

  it('names every admin path with any method, covering the admin paths the token patterns also match', () => {
    const denied = adminRoutesAnyMethod();

    expect(denied.map(executeApiTail).sort()).toEqual([
      '*/api/v2/api_docs',
      '*/api/v2/system/federation',
      '*/api/v2/system/service',
      '*/api/v2/system/service/*',
      '*/api/v2/system/service/*/certificate',
      '*/api/v2/system/service/*/users',
    ]);
    for (const method of ['GET', 'PATCH', 'DELETE']) {
      const path = '/api/v2/system/service/client_credentials';
      expect(tokenRoutesOfAnyService().some((r) => routeMatches(r, method, path))).toBe(method !== 'PATCH');
      expect(denied.some((r) => routeMatches(r, method, path))).toBe(true);
    }
  });

  it('names the authorization code routes of one service, never the consent callback (it has no IAM)', () => {
    expect(userTokenRoutes('mail').map(executeApiTail).sort()).toEqual([
      'DELETE/api/v2/mail/user_token',
      'GET/api/v2/mail/authorize',
      'GET/api/v2/mail/user_token',
    ]);
    expect(() => userTokenRoutes('*')).toThrow(/not a valid service name/);
  });

  it('names the API docs route alone for a documentation reader', () => {
    expect(apiDocsRoutes().map(executeApiTail)).toEqual(['GET/api/v2/api_docs']);
  });

  it('matches a request against a granted route as IAM does: literal, case-sensitive, * and ? wildcards', () => {
    const get: ExecuteApiRoute = { method: 'GET', path: '/api/v2/graph/client_credentials' };
    const anyAdmin = { method: '*', path: '/api/v2/system/*' };

    expect(routeMatches(get, 'GET', '/api/v2/graph/client_credentials')).toBe(true);
    expect(routeMatches(get, 'POST', '/api/v2/graph/client_credentials')).toBe(false);
    expect(routeMatches(get, 'GET', '/api/v2/graphs/client_credentials')).toBe(false);
    expect(routeMatches(get, 'get', '/api/v2/graph/client_credentials')).toBe(false);
    expect(routeMatches(anyAdmin, 'DELETE', '/api/v2/system/service/graph')).toBe(true);
    expect(routeMatches(anyAdmin, 'GET', '/api/v2/graph/client_credentials')).toBe(false);
    expect(routeMatches({ method: 'GET', path: '/api/v2/gr?ph/x' }, 'GET', '/api/v2/graph/x')).toBe(true);
    expect(routeMatches({ method: 'GET', path: '/api/v2/a.b' }, 'GET', '/api/v2/aXb')).toBe(false);
  });
});
