import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy, { type MiddlewareObj } from '@middy/core';
import httpJsonBodyParser from '@middy/http-json-body-parser';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { callerOf } from '../lib/audit';
import { NotFoundError } from '../lib/errors';
import { allowedMethods, bodyLimit, httpErrors, jsonResponse, SECURITY_HEADERS } from '../lib/http';
import { buildOpenApiDocument } from '../lib/openapi';
import { ROUTES } from '../lib/routes';
import type { VersionedView } from '../lib/service-admin';
import { ServiceNameSchema } from '../lib/service-config';
import { parseOrThrow } from '../lib/validation';
import { answerBeforeLambdaTimeout, type RequestBudget, requestBudget } from './request-budget';
import { createRuntime } from './runtime';
import { createTracer } from './tracing';

// Only this function issues certificates: the issuer (and @peculiar/x509) loads on first use, not at cold start.
const runtime = createRuntime({
  certificateIssuer: async () =>
    (await import('../lib/credentials/kms-certificate-issuer')).issueKmsCertificate,
});

/** A response carrying one service, with its version as a strong ETag for If-Match. */
function serviceResponse(status: number, { service, version }: VersionedView): APIGatewayProxyResult {
  return jsonResponse(status, service, { ETag: `"${version}"` });
}

/** The version named by an If-Match header (`"v"`, `W/"v"` or `v`); undefined when absent or `*`. */
function ifMatchOf(event: APIGatewayProxyEvent): string | undefined {
  const header = Object.entries(event.headers ?? {}).find(([k]) => k.toLowerCase() === 'if-match')?.[1];
  if (header === undefined || header.trim() === '*') return undefined;
  return header
    .trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1');
}

let apiDocs: Record<string, unknown> | undefined;

/** One admin route and method; `budget` is the time the request may use (every AWS call of it is bounded by it). */
type AdminAction = (event: APIGatewayProxyEvent, budget: RequestBudget) => Promise<APIGatewayProxyResult>;

const serviceName = (event: APIGatewayProxyEvent) =>
  parseOrThrow(ServiceNameSchema, event.pathParameters?.name, 'name');
/** After jsonBodyOnWrite the body is the parsed JSON value, not the string API Gateway delivered. */
const bodyOf = (event: APIGatewayProxyEvent) => event.body as unknown;

/**
 * What each admin route does, by `METHOD resource`. Which methods a route accepts is the route table's to say
 * (lib/routes.ts, enforced by allowedMethods() before this runs); the check below keeps the two in step.
 */
const ACTIONS: Record<string, AdminAction> = {
  'GET /api/v2/api_docs': async () => {
    apiDocs ??= buildOpenApiDocument();
    return jsonResponse(200, apiDocs);
  },
  'GET /api/v2/system/federation': async () => {
    if (!runtime.federation) {
      throw new NotFoundError(
        'federation is not set up in this deployment: enable outbound identity federation in the stack (see README) to use credential_type federated',
      );
    }
    return jsonResponse(200, runtime.federation);
  },
  'GET /api/v2/system/service': async (_event, budget) =>
    jsonResponse(200, { resource: await runtime.admin.list(budget) }),
  'POST /api/v2/system/service': async (event, budget) => {
    const result = await runtime.admin.create(bodyOf(event), budget);
    return result.kind === 'single'
      ? serviceResponse(201, result.created)
      : jsonResponse(201, { resource: result.services });
  },
  'GET /api/v2/system/service/{name}': async (event, budget) =>
    serviceResponse(200, await runtime.admin.get(serviceName(event), budget)),
  'PATCH /api/v2/system/service/{name}': async (event, budget) =>
    serviceResponse(
      200,
      await runtime.admin.update(serviceName(event), bodyOf(event), ifMatchOf(event), budget),
    ),
  'DELETE /api/v2/system/service/{name}': async (event, budget) =>
    serviceResponse(200, await runtime.admin.delete(serviceName(event), ifMatchOf(event), budget)),
  'GET /api/v2/system/service/{name}/certificate': async (event, budget) => ({
    statusCode: 200,
    headers: { ...SECURITY_HEADERS, 'Content-Type': 'application/x-pem-file' },
    body: `${await runtime.admin.certificate(serviceName(event), budget)}\n`,
  }),
  'POST /api/v2/system/service/{name}/certificate': async (event, budget) => {
    const issued = await runtime.admin.issueNextCertificate(serviceName(event), ifMatchOf(event), budget);
    return jsonResponse(
      201,
      {
        certificate: issued.certificate.pem,
        certificate_thumbprint_sha256: issued.certificate.thumbprintSha256,
        certificate_not_after: issued.certificate.notAfter,
      },
      { ETag: `"${issued.version}"` },
    );
  },
};

// A route or method added to the table without an action here (or the reverse) fails the cold start, not a call.
const adminRoutes = ROUTES.filter((route) => route.function === 'admin').flatMap((route) =>
  route.methods.map((method) => `${method} ${route.resource}`),
);
if (adminRoutes.sort().join() !== Object.keys(ACTIONS).sort().join()) {
  throw new Error('functions/admin.ts: the actions and the admin routes of lib/routes.ts differ');
}

/** `/api/v2/system/service[/{name}]`: register and manage services; `/api/v2/api_docs`: the OpenAPI document. */
async function systemService(event: APIGatewayProxyEvent, context: Context): Promise<APIGatewayProxyResult> {
  // Every line logged for this request (the audit lines of lib/service-admin.ts included) names the caller.
  runtime.logger.appendKeys({ caller: callerOf(event) });
  // allowedMethods() has answered 404 or 405 for anything the route table does not serve.
  const action = ACTIONS[`${event.httpMethod} ${event.resource}`] as AdminAction;
  return action(event, requestBudget(event, context));
}

/** Parses JSON bodies only on methods that carry one, so GET and DELETE need no Content-Type. */
function jsonBodyOnWrite(): MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult> {
  const parser = httpJsonBodyParser();
  return {
    before: async (request) => {
      const method = request.event.httpMethod;
      if (method !== 'POST' && method !== 'PATCH' && method !== 'PUT') return;
      // Issuing the next certificate takes no body (whatever is sent is ignored).
      if (request.event.resource === '/api/v2/system/service/{name}/certificate') return;
      // API Gateway passes header names in the client's casing; the parser looks for two spellings only.
      const headers = request.event.headers ?? {};
      const contentType = Object.entries(headers).find(([k]) => k.toLowerCase() === 'content-type')?.[1];
      request.event.headers = { ...headers, 'content-type': contentType };
      // After this the body is the parsed JSON value, not the string API Gateway delivered.
      await parser.before?.(request as never);
    },
  };
}

export const handler = middy<APIGatewayProxyEvent, APIGatewayProxyResult>(answerBeforeLambdaTimeout)
  .use(captureLambdaHandler(createTracer(), { captureResponse: false }))
  .use(injectLambdaContext(runtime.logger, { resetKeys: true }))
  .use(httpErrors({ logger: runtime.logger }))
  .use(allowedMethods())
  .use(bodyLimit())
  .use(jsonBodyOnWrite())
  .handler(systemService);
