/**
 * What each kind of caller may invoke, as the resource tails of `execute-api:Invoke` ARNs
 * (`arn:aws:execute-api:<region>:<account>:<api-id>/<stage>/<tail>`, the tail being `<METHOD><path>`, e.g.
 * `GET/api/v2/graph/client_credentials`). The CDK construct builds its grants and its resource policy from these,
 * and a local server can check a caller's grants with the same lists. Derived from lib/routes.ts, so a new route
 * or method changes the grants too.
 */
import { ValidationError } from './errors';
import { type FunctionName, ROUTES } from './routes';
import { ServiceNameSchema } from './service-config';

/** One method on one concrete path (or a pattern of them, with IAM's `*` wildcard). */
export interface ExecuteApiRoute {
  /** `GET`, `POST`, ... or `*` for any method. */
  readonly method: string;
  /** Starts with `/`; `*` matches any characters, `/` included (IAM ARN matching). */
  readonly path: string;
}

/** The route of the OpenAPI document. */
export const API_DOCS_RESOURCE = '/api/v2/api_docs';

/** The methods of the token route that only read (a read-only grant gets these and no others). */
export const TOKEN_READ_METHODS: readonly string[] = ['GET'];

/** `<METHOD><path>`: the part of an execute-api ARN after `<api-id>/<stage>/`. */
export function executeApiTail(route: ExecuteApiRoute): string {
  return `${route.method}${route.path}`;
}

/**
 * Throws a ValidationError unless `serviceName` is one literal, valid service name: a grant names exactly one
 * service, so IAM wildcards (`*`, `?`), a `/` and reserved names are refused.
 */
export function assertGrantableServiceName(serviceName: string): void {
  const result = ServiceNameSchema.safeParse(serviceName);
  if (!result.success) {
    throw new ValidationError(
      `"${serviceName}" is not a valid service name: ${result.error.issues.map((i) => i.message).join('; ')}`,
    );
  }
}

/**
 * The token routes of one service (`/api/v2/<service>/client_credentials`): get, refresh and clear its tokens
 * (every method the token function serves there), or with `readOnly` only get them.
 */
export function tokenRoutes(serviceName: string, options: { readOnly?: boolean } = {}): ExecuteApiRoute[] {
  assertGrantableServiceName(serviceName);
  return routesServedBy('token', () => serviceName).filter(
    (r) => !options.readOnly || TOKEN_READ_METHODS.includes(r.method),
  );
}

/**
 * The authorization code routes a workload calls for one service: start a consent (`authorize`), get and forget
 * users' delegated tokens (`user_token`). Not the consent callback, which has no IAM.
 */
export function userTokenRoutes(serviceName: string): ExecuteApiRoute[] {
  assertGrantableServiceName(serviceName);
  return routesServedBy('delegated', () => serviceName).filter((r) => !r.path.startsWith('/api/v2/system/'));
}

/**
 * Every route the admin function serves (service management and the API docs), and the listing of a service's
 * connected users, path parameters as `*`: service names cannot contain `/`, so there `*` stands for exactly one
 * name.
 */
export function adminRoutes(): ExecuteApiRoute[] {
  return [
    ...routesServedBy('admin', () => '*'),
    ...routesServedBy('delegated', () => '*').filter((r) => r.path.startsWith('/api/v2/system/')),
  ];
}

/**
 * The token routes of every service (service name `*`): what a resource policy lets other accounts reach, each
 * caller still limited to the services its own identity policy names. In an ARN `*` also matches `/`, so these
 * patterns match some admin paths too (`GET/api/v2/system/service/client_credentials`): a resource policy that
 * allows them must deny {@link adminRoutesAnyMethod} explicitly.
 */
export function tokenRoutesOfAnyService(): ExecuteApiRoute[] {
  return routesServedBy('token', () => '*');
}

/**
 * Every admin route's path with any method (method `*` on `/api/v2/system/service`, on its items, on the API docs):
 * what a resource policy denies to every principal outside the broker's own account.
 */
export function adminRoutesAnyMethod(): ExecuteApiRoute[] {
  return [...new Set(adminRoutes().map((r) => r.path))].map((path) => ({ method: '*', path }));
}

/** The OpenAPI document (`GET /api/v2/api_docs`). */
export function apiDocsRoutes(): ExecuteApiRoute[] {
  const route = ROUTES.find((r) => r.resource === API_DOCS_RESOURCE);
  if (!route) throw new Error(`lib/routes.ts has no ${API_DOCS_RESOURCE} route`);
  return route.methods.map((method) => ({ method, path: route.resource }));
}

/**
 * Whether a request (`method`, concrete `path`) falls under a granted route, matched as IAM matches the tail of
 * an execute-api ARN: literally and case-sensitively, `*` standing for any characters and `?` for one.
 */
export function routeMatches(granted: ExecuteApiRoute, method: string, path: string): boolean {
  const pattern = executeApiTail(granted)
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${pattern}$`).test(executeApiTail({ method, path }));
}

/** Every method of every route a function serves, each `{param}` of the path replaced by `parameter(name)`. */
function routesServedBy(fn: FunctionName, parameter: (name: string) => string): ExecuteApiRoute[] {
  return ROUTES.filter((r) => r.function === fn && r.auth !== 'none').flatMap((route) => {
    const path = route.resource.replace(/\{([^}]+)\}/g, (_, name: string) => parameter(name));
    return route.methods.map((method) => ({ method, path }));
  });
}
