import { randomUUID } from 'node:crypto';
import vm from 'node:vm';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import fc from 'fast-check';
import { ROUTES, type RouteDefinition } from '../../lib/routes';
import { buildProxyEvent } from '../../local/apigw-event';
import { BrokerHarness, type CallResult } from '../fixtures/broker-harness';
import { expectErrorShape } from '../fixtures/error-shape';
import { registerSensitiveValue } from '../fixtures/log-redaction';

/**
 * Input hardening (issue 6 §5), property-based: the production handlers, over DynamoDB Local, the embedded
 * Secrets Manager server and the Entra emulator, get arbitrary bodies, path parameters, query strings and
 * headers on every route and method of ROUTES. Whatever arrives, the answer is a 2xx or 4xx (never a 5xx), a
 * JSON body, the API's one error shape, the security headers and no CORS header; and nothing is left rejected
 * without a handler.
 */

/** Runs per property; `PROPERTY_RUNS=2000 npx jest test/integration/properties.test.ts` searches harder. */
const NUM_RUNS = Number(process.env.PROPERTY_RUNS ?? 60);

// ---------------------------------------------------------------------------------------------------------------
// Arbitraries

/** A request body as API Gateway delivers it. */
interface Body {
  text: string | null;
  base64: boolean;
}

const body = (text: string | null, base64 = false): Body => ({ text, base64 });

/** Strings of every sort: ASCII, any code point, lone surrogates, control characters. */
const anyString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.string({ unit: 'grapheme' }),
  fc
    .array(fc.integer({ min: 0xd800, max: 0xdfff }), { minLength: 1, maxLength: 3 })
    .map((units) => String.fromCharCode(...units)),
  fc.constantFrom('\u0000', '\r\n', '\u2028', '\uFEFF', '%', '%zz', '%2F', '%00', '%E0%A4%A', '../', '//'),
);

/** JSON objects carrying keys meant to pollute prototypes, at the top and nested. */
const pollutingJson = fc
  .tuple(
    fc.constantFrom('__proto__', 'constructor', 'prototype'),
    fc.jsonValue(),
    fc.constantFrom('top', 'config', 'resource'),
  )
  .map(([key, value, where]) => {
    const inner = `{${JSON.stringify(key)}:${JSON.stringify({ polluted: true, prototype: { polluted: true }, value })}}`;
    if (where === 'top') return inner;
    if (where === 'config') return `{"name":"pollute","config":${inner}}`;
    return `{"resource":[${inner}]}`;
  });

/** Bodies around the 64 KiB limit, in ASCII and in two-byte characters (bytes, not characters, count). */
const sizedBody = fc
  .tuple(fc.integer({ min: -64, max: 64 }), fc.constantFrom('a', 'é', 'json'))
  .map(([delta, kind]) => {
    const bytes = 64 * 1024 + delta;
    const text =
      kind === 'a'
        ? 'a'.repeat(bytes)
        : kind === 'é'
          ? 'é'.repeat(Math.floor(bytes / 2))
          : `{"name":"big","description":"${'d'.repeat(Math.max(0, bytes - 31))}"}`;
    return body(text);
  });

/** Far over the limit. */
const hugeBody = fc.integer({ min: 65 * 1024, max: 1024 * 1024 }).map((n) => body('x'.repeat(n)));

/** Arrays or objects nested thousands deep, under the size limit (5 bytes a level for objects). */
const deepBody = fc.tuple(fc.integer({ min: 50, max: 13_000 }), fc.boolean()).map(([depth, arrays]) => {
  const text = arrays
    ? '['.repeat(depth) + ']'.repeat(depth)
    : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
  return body(text);
});

/** Any body at all, for any route. */
const anyBody: fc.Arbitrary<Body> = fc.oneof(
  { arbitrary: fc.constant(body(null)), weight: 2 },
  { arbitrary: fc.constant(body('')), weight: 1 },
  { arbitrary: anyString.map((t) => body(t)), weight: 3 },
  { arbitrary: fc.json().map((t) => body(t)), weight: 3 },
  { arbitrary: fc.jsonValue().map((v) => body(JSON.stringify(v) ?? 'null')), weight: 3 },
  { arbitrary: pollutingJson.map((t) => body(t)), weight: 2 },
  { arbitrary: sizedBody, weight: 1 },
  { arbitrary: hugeBody, weight: 1 },
  { arbitrary: deepBody, weight: 1 },
  {
    arbitrary: fc.oneof(fc.json(), anyString).map((t) => body(Buffer.from(t).toString('base64'), true)),
    weight: 1,
  },
  { arbitrary: fc.string().map((t) => body(t, true)), weight: 1 },
);

/** Path parameter values: names that exist, valid-looking names, and everything a path segment can carry. */
const pathParameter = (existing: readonly string[]) =>
  fc.oneof(
    { arbitrary: fc.constantFrom(...existing), weight: 4 },
    { arbitrary: fc.stringMatching(/^[a-z][a-z0-9_-]{1,63}$/), weight: 2 },
    { arbitrary: fc.constantFrom('', 'system', 'api_docs', 'a', 'A-b', 'x'.repeat(65)), weight: 1 },
    { arbitrary: anyString, weight: 2 },
    {
      arbitrary: fc.integer({ min: 1_000, max: 100_000 }).map((n) => 'n'.repeat(n)),
      weight: 1,
    },
    {
      arbitrary: fc
        .array(fc.constantFrom('a', '/', '%2F', '%25', '..', '%', 'é', '%C3%A9'), { maxLength: 12 })
        .map((pieces) => pieces.join('')),
      weight: 1,
    },
  );

/** Header or query names: the ones the API reads, in any casing, prototype keys and random ones. */
const parameterName = (known: readonly string[]) =>
  fc.oneof(
    fc.constantFrom(...known),
    fc.mixedCase(fc.constantFrom(...known)),
    fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty'),
    anyString,
  );

const contentType = fc.oneof(
  fc.constantFrom(
    'application/json',
    'application/json; charset=utf-8',
    'APPLICATION/JSON',
    'application/vnd.api+json',
    'application/json;',
    'application/jsonx',
    'text/json',
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    '',
    ' application/json',
  ),
  anyString,
);

/** A value that is sometimes very long (headers and query values have no length limit in the handlers). */
const headerValue = fc.oneof(
  { arbitrary: anyString, weight: 8 },
  { arbitrary: fc.integer({ min: 8_000, max: 80_000 }).map((n) => 'v'.repeat(n)), weight: 1 },
);

/** Content-Type under several casings at once: mostly JSON, so that bodies reach the parser and validation. */
const contentTypeEntries = fc.array(
  fc.tuple(
    fc.mixedCase(fc.constant('content-type')),
    fc.oneof(
      { arbitrary: fc.constantFrom('application/json', 'application/json; charset=utf-8'), weight: 6 },
      { arbitrary: contentType, weight: 2 },
    ),
  ),
  { minLength: 0, maxLength: 3 },
);

/** Entries of a header map: content types, If-Match values and random headers. */
const headerEntries = fc
  .tuple(
    fc.oneof({ arbitrary: contentTypeEntries.filter((e) => e.length > 0), weight: 4 }, contentTypeEntries),
    fc.array(
      fc.oneof(
        fc.tuple(
          fc.mixedCase(fc.constant('if-match')),
          fc.oneof(
            fc.constantFrom('*', '""', 'W/""', 'W/"x"', '"'),
            anyString,
            fc.uuid().map((u) => `"${u}"`),
          ),
        ),
        fc.tuple(
          parameterName(['authorization', 'origin', 'accept', 'user-agent', 'x-forwarded-for']),
          headerValue,
        ),
      ),
      { maxLength: 4 },
    ),
  )
  .map(([types, others]): [string, string][] => [...types, ...others]);

/** Query values: plausible scopes and TTLs, numbers in odd notations, anything. */
const queryValue = fc.oneof(
  fc.constantFrom('https://graph.microsoft.com/.default', 'https://vault.azure.net/.default'),
  fc.integer({ min: -10_000, max: 10_000 }).map(String),
  fc.constantFrom('1e3', '0x10', 'NaN', 'Infinity', '-0', ' 5 ', '0', '3600', '3601', '1.5', ''),
  headerValue,
);

const queryEntries = fc.oneof(
  { arbitrary: fc.constant([] as [string, string][]), weight: 3 },
  {
    arbitrary: fc.array(fc.tuple(fc.constantFrom('scope', 'min_ttl'), queryValue), {
      minLength: 1,
      maxLength: 2,
    }),
    weight: 3,
  },
  {
    arbitrary: fc.array(fc.tuple(parameterName(['scope', 'min_ttl']), queryValue), { maxLength: 4 }),
    weight: 2,
  },
);

/** Builds an object from entries as JSON.parse would: `__proto__` becomes an own property, not the prototype. */
function ownEntries(entries: readonly (readonly [string, string])[]): Record<string, string> {
  return Object.fromEntries(entries);
}

/** The raw parts of one request to a route; turned into an API Gateway event by {@link toEvent}. */
interface RequestParts {
  method: string;
  pathParameter: string | undefined;
  headers: [string, string][];
  query: [string, string][];
  body: Body;
  /** Whether the maps API Gateway sends as null when empty come as null. */
  nullMaps: boolean;
}

/** JSON with long strings cut short: a counterexample with a 64 KiB body stays readable (the seed reproduces it). */
function abbreviated(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'string' && v.length > 200 ? `${v.slice(0, 60)}... (${v.length} characters)` : v,
  );
}

/** Shows `value` abbreviated in fast-check's reports. */
function reportedAbbreviated<T extends object>(value: T): T {
  return Object.assign(value, { [fc.toStringMethod]: () => abbreviated(value) });
}

function requestParts(method: fc.Arbitrary<string>, existing: readonly string[]): fc.Arbitrary<RequestParts> {
  return fc
    .record({
      method,
      pathParameter: fc.option(pathParameter(existing), { nil: undefined, freq: 8 }),
      headers: headerEntries,
      query: queryEntries,
      body: anyBody,
      nullMaps: fc.boolean(),
    })
    .map(reportedAbbreviated);
}

/** The name of a route's one path parameter (`service`, `name`), if it has one. */
function parameterOf(route: RouteDefinition): string | undefined {
  return /\{(\w+)\}/.exec(route.resource)?.[1];
}

/** `value` as a path segment; a lone surrogate cannot be percent-encoded and goes in as it is. */
function pathSegment(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return value;
  }
}

/** The event API Gateway would deliver for `parts` on `route`, built by the same code local mode uses. */
function toEvent(route: RouteDefinition, parts: RequestParts): APIGatewayProxyEvent {
  const param = parameterOf(route);
  const value = parts.pathParameter;
  const path =
    param === undefined ? route.resource : route.resource.replace(`{${param}}`, pathSegment(value ?? ''));
  const event = buildProxyEvent({
    method: parts.method,
    resource: route.resource,
    path,
    pathParameters: param !== undefined && value !== undefined ? { [param]: value } : undefined,
    body: parts.body.text,
  });
  // Set by hand, so duplicate casings and prototype keys arrive as API Gateway would pass them.
  const headers = ownEntries(parts.headers);
  const query = ownEntries(parts.query);
  event.headers = parts.nullMaps && parts.headers.length === 0 ? (null as never) : headers;
  event.multiValueHeaders = Object.fromEntries(parts.headers.map(([k]) => [k, [headers[k] as string]]));
  event.queryStringParameters = parts.query.length === 0 && parts.nullMaps ? null : query;
  event.multiValueQueryStringParameters =
    parts.query.length === 0 ? null : Object.fromEntries(parts.query.map(([k]) => [k, [query[k] as string]]));
  event.isBase64Encoded = parts.body.base64;
  if (param !== undefined && value === undefined && !parts.nullMaps) event.pathParameters = {};
  return event;
}

// ---------------------------------------------------------------------------------------------------------------
// The invariants

/** Unhandled rejections seen by the real process (jest gives each test file a copy of `process`). */
const realProcess = vm.runInThisContext('process') as NodeJS.Process;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => {
  unhandled.push(reason);
};

/** Lets pending promise rejections be reported before the invariants are checked. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

let h: BrokerHarness;
const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).sort();

/** Every invariant every response must keep, whatever the request. */
async function expectSafeResponse(res: CallResult): Promise<void> {
  await settle();
  expect(unhandled).toEqual([]);
  expect([2, 4]).toContain(Math.floor(res.status / 100));
  if (res.headers['content-type']?.startsWith('text/html')) {
    // The consent callback answers the user's browser with a page that loads nothing and cannot be framed.
    expect(res.headers['content-security-policy']).toBe("default-src 'none'; frame-ancestors 'none'");
    expect(res.headers['referrer-policy']).toBe('no-referrer');
  } else {
    expect(() => JSON.parse(res.raw)).not.toThrow();
    if (res.status >= 400) expectErrorShape(res.status, JSON.parse(res.raw));
  }
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['x-content-type-options']).toBe('nosniff');
  expect(res.headers['strict-transport-security']).toMatch(/^max-age=\d+/);
  expect(res.headers['access-control-allow-origin']).toBeUndefined();
  expect(res.raw.includes(h.clientSecret)).toBe(false);
  expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeKeys);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
}

// ---------------------------------------------------------------------------------------------------------------

/** Services the token routes are fuzzed against (never touched by the admin properties). */
const TOKEN_SERVICES = ['tok-alpha', 'tok-inactive', 'tok-authcode', 'tok-multi'];
/** Services the admin routes may read, change and delete. */
const ADMIN_SERVICES = ['adm-one', 'adm-two', 'adm-three'];

beforeAll(async () => {
  realProcess.on('unhandledRejection', onUnhandled);
  h = await BrokerHarness.start({ entraTimeoutMs: 2000 });
  await h.createService('tok-alpha');
  await h.createService('tok-inactive', { is_active: false });
  await h.createService(
    'tok-authcode',
    {},
    { grant_type: 'authorization_code', is_client_credentials: false },
  );
  await h.createService(
    'tok-multi',
    {},
    { scopes: 'https://graph.microsoft.com/.default https://vault.azure.net/.default' },
  );
  for (const name of ADMIN_SERVICES) await h.createService(name);
});

afterAll(async () => {
  realProcess.off('unhandledRejection', onUnhandled);
  await h.close();
});

afterEach(() => {
  expect(unhandled).toEqual([]);
});

const routeMethods = ROUTES.flatMap((route) =>
  route.methods.map((method) => [`${method} ${route.resource}`, route, method] as const),
);

describe.each(routeMethods)('%s', (_title, route, method) => {
  const existing = route.resource.startsWith('/api/v2/{service}/') ? TOKEN_SERVICES : ADMIN_SERVICES;

  it('answers any body, path parameter, query and headers with a safe 2xx or 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(requestParts(fc.constant(method), existing), async (parts) => {
        await expectSafeResponse(await h.raw(route.function, toEvent(route, parts)));
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

describe.each(ROUTES.map((route) => [route.resource, route] as const))('%s', (_title, route) => {
  const existing = route.resource.startsWith('/api/v2/{service}/') ? TOKEN_SERVICES : ADMIN_SERVICES;
  const otherMethod = fc.oneof(
    fc.constantFrom('PUT', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT', 'PATCH', 'POST', 'DELETE', 'get', 'Post'),
    anyString,
  );

  it('answers any other method with a safe 4xx, and 405 naming the allowed methods when the path is valid', async () => {
    await fc.assert(
      fc.asyncProperty(requestParts(otherMethod, existing), fc.boolean(), async (parts, validPath) => {
        fc.pre(!route.methods.includes(parts.method.toUpperCase()));
        const request =
          validPath && parameterOf(route) !== undefined ? { ...parts, pathParameter: existing[0] } : parts;
        const event = toEvent(route, request);
        event.httpMethod = request.method; // as sent, not upper-cased
        const res = await h.raw(route.function, event);
        await expectSafeResponse(res);
        expect(res.status).toBeGreaterThanOrEqual(400);
        // (Without its parameter, the {name} route is served as the list route; API Gateway never sends that.)
        const complete = parameterOf(route) === undefined || request.pathParameter !== undefined;
        if (res.status === 405 && complete) expect(res.headers.allow).toBe(route.methods.join(', '));
      }),
      { numRuns: Math.ceil(NUM_RUNS / 2) },
    );
  });
});

/**
 * A method the route does not serve is refused as such, before the body is looked at: no body is expected, so
 * none should be parsed, and the caller learns which methods exist. (Today the admin function runs its body
 * limit and JSON parser first, for POST, PATCH and PUT on every route, and answers 413, 415 or 422 instead.)
 */
describe('methods a route does not serve', () => {
  const cases = [
    ['POST', '/api/v2/api_docs', 'a text body', undefined, 'text/plain', 'hello'],
    ['POST', '/api/v2/api_docs', 'malformed JSON', undefined, 'application/json', '{not json'],
    ['PATCH', '/api/v2/system/service', 'no Content-Type', undefined, undefined, '{}'],
    ['PUT', '/api/v2/system/service', 'a __proto__ key', undefined, 'application/json', '{"__proto__":{}}'],
    ['PUT', '/api/v2/system/service/{name}', 'a text body', 'adm-one', 'text/plain', 'x'],
    [
      'POST',
      '/api/v2/system/service/{name}',
      'a 70 kB body',
      'adm-one',
      'application/json',
      'x'.repeat(70_000),
    ],
  ] as const;

  it.each(cases)(
    'answers %s %s with 405 and Allow, also with %s',
    async (method, resource, _what, name, type, text) => {
      const route = ROUTES.find((r) => r.resource === resource) as RouteDefinition;
      const event = buildProxyEvent({
        method,
        resource,
        path: resource.replace('{name}', name ?? ''),
        pathParameters: name === undefined ? undefined : { name },
        headers: type === undefined ? {} : { 'Content-Type': type },
        body: text,
      });
      const res = await h.raw('admin', event);
      await expectSafeResponse(res);
      expect(res.status).toBe(405);
      expect(res.headers.allow).toBe(route.methods.join(', '));
    },
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Requests that get past parsing: valid-looking services, patches and token requests

const GUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

/** Field paths of a service body, for mutations. */
const FIELDS = [
  'name',
  'label',
  'description',
  'type',
  'is_active',
  'config',
  'config.client_id',
  'config.client_secret',
  'config.client_secret_arn',
  'config.tenant_id',
  'config.grant_type',
  'config.is_client_credentials',
  'config.scopes',
  'config.authority_url',
] as const;

/** Values a field may be given: plausible ones for some field, and anything. */
function fieldValue(emulatorUrl: string): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.stringMatching(new RegExp(`^${GUID}$`)),
    fc.constantFrom(
      'contoso.onmicrosoft.com',
      'common',
      'https://graph.microsoft.com/.default https://vault.azure.net/.default',
      'https://graph.microsoft.com/.default https://graph.microsoft.com/.default',
      'User.Read',
      `${emulatorUrl}/{tenant_id}`,
      `${emulatorUrl}/{tenant_id}/`,
      `${emulatorUrl}/{tenant_id}?x=1`,
      'https://login.microsoftonline.com/{tenant_id}',
      'https://evil.example.com/{tenant_id}',
      'http://127.0.0.1:1/{tenant_id}',
      'ftp://login.microsoftonline.com/x',
      '//login.microsoftonline.com',
      'not a url',
      'arn:aws:secretsmanager:us-east-1:123456789012:secret:token-broker/test/services/x-AbCdEf',
      'arn:aws:secretsmanager:eu-west-1:000000000000:secret:other/secret',
      'authorization_code',
      'client_credentials',
      'oauth_azure_ad',
    ),
    fc.boolean(),
    fc.constant(null),
    fc.integer(),
    anyString,
    fc.string({ maxLength: 1100 }),
    fc.jsonValue({ maxDepth: 2 }),
  );
}

type Mutation =
  | { kind: 'set'; path: string; value: unknown }
  | { kind: 'delete'; path: string }
  | { kind: 'extra'; path: string; key: string; value: unknown };

function mutation(emulatorUrl: string): fc.Arbitrary<Mutation> {
  return fc.oneof(
    fc.record({
      kind: fc.constant('set' as const),
      path: fc.constantFrom(...FIELDS),
      value: fieldValue(emulatorUrl),
    }),
    fc.record({ kind: fc.constant('delete' as const), path: fc.constantFrom(...FIELDS) }),
    fc.record({
      kind: fc.constant('extra' as const),
      path: fc.constantFrom('', 'config'),
      key: fc.oneof(fc.constantFrom('__proto__', 'constructor', 'client_secret_value', 'id'), anyString),
      value: fc.jsonValue({ maxDepth: 2 }),
    }),
  );
}

/** The object at `segments` below `root`, or undefined when something on the way is not an object. */
function objectAt(
  root: Record<string, unknown>,
  segments: readonly string[],
): Record<string, unknown> | undefined {
  let target: unknown = root;
  for (const segment of segments) {
    if (target === null || typeof target !== 'object' || Array.isArray(target)) return undefined;
    target = (target as Record<string, unknown>)[segment];
  }
  return target !== null && typeof target === 'object' && !Array.isArray(target)
    ? (target as Record<string, unknown>)
    : undefined;
}

/**
 * Applies mutations to a copy of `base`, writing keys as own properties (as JSON.parse would, `__proto__`
 * included); a mutation below a field an earlier one replaced by a non-object is skipped.
 */
function mutated(base: Record<string, unknown>, mutations: readonly Mutation[]): Record<string, unknown> {
  const copy = JSON.parse(JSON.stringify(base)) as Record<string, unknown>;
  for (const m of mutations) {
    const segments = m.path === '' ? [] : m.path.split('.');
    const parent = objectAt(copy, m.kind === 'extra' ? segments : segments.slice(0, -1));
    if (!parent) continue;
    const key = m.kind === 'extra' ? m.key : (segments.at(-1) as string);
    if (m.kind === 'delete') delete parent[key];
    else
      Object.defineProperty(parent, key, {
        value: m.value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  return copy;
}

/** The top-level field a mutation touches. */
function topFieldOf(m: Mutation): string {
  if (m.kind === 'extra') return m.path === '' ? m.key : m.path;
  return m.path.split('.')[0] as string;
}

/** An admin event with a JSON body, built directly: fuzzed values must not be registered as secrets. */
function adminEvent(
  method: string,
  body: unknown,
  options: { name?: string; headers?: Record<string, string> } = {},
): APIGatewayProxyEvent {
  return buildProxyEvent({
    method,
    resource: options.name === undefined ? '/api/v2/system/service' : '/api/v2/system/service/{name}',
    path: options.name === undefined ? '/api/v2/system/service' : `/api/v2/system/service/${options.name}`,
    pathParameters: options.name === undefined ? undefined : { name: options.name },
    headers: { 'Content-Type': 'application/json', ...options.headers },
    body: JSON.stringify(body),
  });
}

describe('requests that pass parsing', () => {
  const serviceName = fc.stringMatching(/^[a-z][a-z0-9_-]{1,30}$/).map((n) => `fz-${n}`.slice(0, 64));

  /** A service body for the harness's app with a fresh secret (registered, so the logs are checked for it). */
  const serviceBody = (name: string, secret: string) =>
    h.serviceBody(name, {}, { client_secret: `secret-${secret}` });

  it('creates a valid-looking service with any mutations as a 201 or a 4xx, never echoing its secret', async () => {
    const mutations = fc.array(mutation(h.emulator.url), { maxLength: 3 });
    await fc.assert(
      fc.asyncProperty(
        serviceName,
        fc.uuid(),
        mutations,
        fc.integer({ min: 0, max: 3 }),
        async (name, secret, changes, envelopeSize) => {
          registerSensitiveValue('client secret', `secret-${secret}`);
          const single = mutated(serviceBody(name, secret), changes);
          const body =
            envelopeSize === 0
              ? single
              : {
                  resource: Array.from({ length: envelopeSize }, (_, i) =>
                    i === 0 ? single : serviceBody(`${name}-${i}`, secret),
                  ),
                };
          const res = await h.raw('admin', adminEvent('POST', body));
          await expectSafeResponse(res);
          expect(res.raw.includes(`secret-${secret}`)).toBe(false);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('refuses more services in one envelope than allowed with 400, whatever they hold', async () => {
    const many = Array.from({ length: 26 }, (_, i) => serviceBody(`many-${i}`, randomUUID()));
    const res = await h.raw('admin', adminEvent('POST', { resource: many }));
    await expectSafeResponse(res);
    expect(res.status).toBe(400);
  });

  it('patches an existing service with any mutations and If-Match as a 200 or a 4xx', async () => {
    const target = 'adm-patch';
    await h.createService(target);
    const ifMatch = fc.option(
      fc.oneof(
        fc.constant('*'),
        fc.uuid().map((u) => `"${u}"`),
        anyString,
      ),
      {
        nil: undefined,
      },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(mutation(h.emulator.url), { minLength: 1, maxLength: 3 }),
        fc.uuid(),
        ifMatch,
        async (changes, secret, etag) => {
          registerSensitiveValue('client secret', `secret-${secret}`);
          // A patch names only some fields: those the mutations touched (all of config when they touched it).
          const full = mutated(serviceBody(target, secret), changes);
          const touched = new Set(changes.map(topFieldOf));
          const body = Object.fromEntries(Object.entries(full).filter(([k]) => touched.has(k)));
          const headers: Record<string, string> = etag === undefined ? {} : { 'If-Match': etag };
          const res = await h.raw('admin', adminEvent('PATCH', body, { name: target, headers }));
          await expectSafeResponse(res);
          expect(res.raw.includes(`secret-${secret}`)).toBe(false);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('serves, refreshes and clears tokens of existing services for any query as a 200 or a 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'DELETE'),
        fc.constantFrom(...TOKEN_SERVICES),
        queryEntries,
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        async (method, service, query, signature) => {
          // A SigV4 Authorization header as API Gateway passes it on: it must not reach the logs either.
          const authorization = `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20310506/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=${Buffer.from(signature).toString('hex')}`;
          registerSensitiveValue('authorization header', authorization);
          const event = buildProxyEvent({
            method,
            resource: '/api/v2/{service}/client_credentials',
            path: `/api/v2/${service}/client_credentials`,
            pathParameters: { service },
            headers: { Authorization: authorization },
          });
          event.queryStringParameters = query.length === 0 ? null : ownEntries(query);
          const res = await h.raw('token', event);
          await expectSafeResponse(res);
          if (res.status === 200 && method !== 'DELETE') {
            expect(h.emulator.issuedTokens).toContain(res.body.access_token);
          }
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});
