/**
 * The HTTP API: every route, the Lambda function that serves it, and the methods it accepts.
 * API Gateway (infra/) and the local server (local/) are both built from this one list.
 */

/** Which Lambda function serves a route. */
export type FunctionName = 'token' | 'admin' | 'delegated';

/** One API Gateway resource (path template) and the methods it serves. */
export interface RouteDefinition {
  /** API Gateway resource path, with `{param}` placeholders. */
  readonly resource: string;
  readonly methods: readonly string[];
  readonly function: FunctionName;
  /**
   * How callers authenticate: `iam` (SigV4, the default) or `none`, only for the consent callback that a user's
   * browser calls (it is authenticated by its single-use state instead).
   */
  readonly auth?: 'iam' | 'none';
}

export const ROUTES: readonly RouteDefinition[] = [
  { resource: '/api/v2/{service}/client_credentials', methods: ['GET', 'POST', 'DELETE'], function: 'token' },
  { resource: '/api/v2/system/service', methods: ['GET', 'POST'], function: 'admin' },
  { resource: '/api/v2/system/service/{name}', methods: ['GET', 'PATCH', 'DELETE'], function: 'admin' },
  { resource: '/api/v2/system/service/{name}/certificate', methods: ['GET', 'POST'], function: 'admin' },
  { resource: '/api/v2/system/federation', methods: ['GET'], function: 'admin' },
  { resource: '/api/v2/api_docs', methods: ['GET'], function: 'admin' },
  // The authorization code flow (lib/authorization-code/, functions/delegated.ts).
  { resource: '/api/v2/{service}/authorize', methods: ['GET'], function: 'delegated' },
  { resource: '/api/v2/{service}/sso', methods: ['GET'], function: 'delegated', auth: 'none' },
  { resource: '/api/v2/{service}/user_token', methods: ['GET', 'DELETE'], function: 'delegated' },
  { resource: '/api/v2/system/service/{name}/users', methods: ['GET'], function: 'delegated' },
];

/** Result of matching a concrete path against {@link ROUTES}. */
export interface RouteMatch {
  readonly route: RouteDefinition;
  readonly pathParameters: Record<string, string>;
}

/**
 * Matches a request path against the route templates, as API Gateway does: literal segments win over
 * `{param}` segments, and a parameter matches exactly one non-empty segment.
 */
export function matchRoute(path: string): RouteMatch | undefined {
  const segments = path.split('/').filter((s) => s.length > 0);
  let best: { match: RouteMatch; literals: number } | undefined;
  for (const route of ROUTES) {
    const template = route.resource.split('/').filter((s) => s.length > 0);
    if (template.length !== segments.length) continue;
    const pathParameters: Record<string, string> = {};
    let literals = 0;
    let ok = true;
    for (let i = 0; i < template.length && ok; i++) {
      const t = template[i] as string;
      const s = segments[i] as string;
      if (t.startsWith('{') && t.endsWith('}')) {
        try {
          pathParameters[t.slice(1, -1)] = decodeURIComponent(s);
        } catch {
          ok = false;
        }
      } else if (t === s) {
        literals++;
      } else {
        ok = false;
      }
    }
    if (ok && (!best || literals > best.literals)) best = { match: { route, pathParameters }, literals };
  }
  return best?.match;
}
