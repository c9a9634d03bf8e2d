import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy, { type MiddlewareObj } from '@middy/core';
import httpJsonBodyParser from '@middy/http-json-body-parser';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { MethodNotAllowedError, NotFoundError } from '../lib/errors';
import { bodyLimit, httpErrors, jsonResponse } from '../lib/http';
import { ServiceNameSchema } from '../lib/service-config';
import { parseOrThrow } from '../lib/validation';
import { createRuntime } from './runtime';

const runtime = createRuntime();

/** `/api/v2/system/service[/{name}]`: register and inspect services. */
async function systemService(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const name = event.pathParameters?.name;
  if (name === undefined) {
    switch (event.httpMethod) {
      case 'GET':
        return jsonResponse(200, { resource: await runtime.admin.list() });
      case 'POST': {
        const result = await runtime.admin.create(event.body as unknown);
        return jsonResponse(201, result.kind === 'single' ? result.service : { resource: result.services });
      }
      default:
        throw new MethodNotAllowedError(`method ${event.httpMethod} is not allowed here`, ['GET', 'POST']);
    }
  }
  const service = parseOrThrow(ServiceNameSchema, name, 'name');
  switch (event.httpMethod) {
    case 'GET':
      return jsonResponse(200, await runtime.admin.get(service));
    default:
      throw new NotFoundError(
        `method ${event.httpMethod} on /api/v2/system/service/{name} is not implemented yet`,
      );
  }
}

/** Parses JSON bodies only on methods that carry one, so GET and DELETE need no Content-Type. */
function jsonBodyOnWrite(): MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult> {
  const parser = httpJsonBodyParser();
  return {
    before: async (request) => {
      const method = request.event.httpMethod;
      // After this the body is the parsed JSON value, not the string API Gateway delivered.
      if (method === 'POST' || method === 'PATCH' || method === 'PUT')
        await parser.before?.(request as never);
    },
  };
}

export const handler = middy<APIGatewayProxyEvent, APIGatewayProxyResult>()
  .use(injectLambdaContext(runtime.logger, { resetKeys: true }))
  .use(httpErrors({ logger: runtime.logger }))
  .use(bodyLimit())
  .use(jsonBodyOnWrite())
  .handler(systemService);
