import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy, { type MiddlewareObj } from '@middy/core';
import httpJsonBodyParser from '@middy/http-json-body-parser';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { callerOf } from '../lib/audit';
import { MethodNotAllowedError } from '../lib/errors';
import { allowedMethods, bodyLimit, httpErrors, jsonResponse } from '../lib/http';
import { buildOpenApiDocument } from '../lib/openapi';
import type { VersionedView } from '../lib/service-admin';
import { ServiceNameSchema } from '../lib/service-config';
import { parseOrThrow } from '../lib/validation';
import { answerBeforeLambdaTimeout, requestBudget } from './request-budget';
import { createRuntime } from './runtime';

const runtime = createRuntime();

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

/** `/api/v2/system/service[/{name}]`: register and manage services; `/api/v2/api_docs`: the OpenAPI document. */
async function systemService(event: APIGatewayProxyEvent, context: Context): Promise<APIGatewayProxyResult> {
  // Every line logged for this request (the audit lines of lib/service-admin.ts included) names the caller.
  runtime.logger.appendKeys({ caller: callerOf(event) });
  if (event.resource === '/api/v2/api_docs') {
    if (event.httpMethod !== 'GET')
      throw new MethodNotAllowedError(`method ${event.httpMethod} is not allowed here`, ['GET']);
    apiDocs ??= buildOpenApiDocument();
    return jsonResponse(200, apiDocs);
  }
  const name = event.pathParameters?.name;
  const body = event.body as unknown;
  // The time this request may use: every AWS call of it is aborted when it runs out (lib gets it as data).
  const budget = requestBudget(event, context);
  if (name === undefined) {
    switch (event.httpMethod) {
      case 'GET':
        return jsonResponse(200, { resource: await runtime.admin.list(budget) });
      case 'POST': {
        const result = await runtime.admin.create(body, budget);
        return result.kind === 'single'
          ? serviceResponse(201, result.created)
          : jsonResponse(201, { resource: result.services });
      }
      default:
        throw new MethodNotAllowedError(`method ${event.httpMethod} is not allowed here`, ['GET', 'POST']);
    }
  }
  const service = parseOrThrow(ServiceNameSchema, name, 'name');
  switch (event.httpMethod) {
    case 'GET':
      return serviceResponse(200, await runtime.admin.get(service, budget));
    case 'PATCH':
      return serviceResponse(200, await runtime.admin.update(service, body, ifMatchOf(event), budget));
    case 'DELETE':
      return serviceResponse(200, await runtime.admin.delete(service, ifMatchOf(event), budget));
    default:
      throw new MethodNotAllowedError(`method ${event.httpMethod} is not allowed here`, [
        'GET',
        'PATCH',
        'DELETE',
      ]);
  }
}

/** Parses JSON bodies only on methods that carry one, so GET and DELETE need no Content-Type. */
function jsonBodyOnWrite(): MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult> {
  const parser = httpJsonBodyParser();
  return {
    before: async (request) => {
      const method = request.event.httpMethod;
      if (method !== 'POST' && method !== 'PATCH' && method !== 'PUT') return;
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
  .use(captureLambdaHandler(runtime.tracer, { captureResponse: false }))
  .use(injectLambdaContext(runtime.logger, { resetKeys: true }))
  .use(httpErrors({ logger: runtime.logger }))
  .use(allowedMethods())
  .use(bodyLimit())
  .use(jsonBodyOnWrite())
  .handler(systemService);
