import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import * as z from 'zod';
import { callerOf, tokenFingerprint } from '../lib/audit';
import { ValidationError } from '../lib/errors';
import { allowedMethods, httpErrors, jsonResponse } from '../lib/http';
import { ServiceNameSchema } from '../lib/service-config';
import { tokenResponseBody } from '../lib/token-response';
import { parseOrThrow } from '../lib/validation';
import { answerBeforeLambdaTimeout, requestBudget } from './request-budget';
import { createRuntime } from './runtime';

const runtime = createRuntime();
const QUERY_PARAMETERS = ['scope', 'min_ttl'];
const MinTtlSchema = z.coerce
  .number({ error: 'must be a whole number of seconds' })
  .int('must be a whole number of seconds')
  .min(0, 'must be at least 0')
  .max(3600, 'must be at most 3600');

/** `GET|POST|DELETE /api/v2/{service}/client_credentials`: get a token, force a new one, clear the cache. */
async function clientCredentials(
  event: APIGatewayProxyEvent,
  context: Context,
): Promise<APIGatewayProxyResult> {
  // Every line logged for this request (audit lines included) names the caller; reset after the request.
  runtime.logger.appendKeys({ caller: callerOf(event) });
  const service = parseOrThrow(ServiceNameSchema, event.pathParameters?.service, 'service');
  const query = event.queryStringParameters ?? {};
  const unknown = Object.keys(query).filter((k) => !QUERY_PARAMETERS.includes(k));
  if (unknown.length > 0) throw new ValidationError(`unknown query parameter: ${unknown.join(', ')}`);
  // The time this request may use: lib aborts its AWS calls and stops asking Entra when it runs out.
  const budget = requestBudget(event, context);

  if (event.httpMethod === 'DELETE') {
    const removed = await runtime.tokens.clearTokens(service, budget);
    runtime.logger.info('audit: token cache cleared', { serviceName: service, removed });
    return jsonResponse(200, { success: true, message: 'Token cache cleared successfully.' });
  }
  const result = await runtime.tokens.getToken(service, {
    scope: query.scope,
    forceRefresh: event.httpMethod === 'POST',
    minTtlSeconds:
      query.min_ttl === undefined ? undefined : parseOrThrow(MinTtlSchema, query.min_ttl, 'min_ttl'),
    ...budget,
  });
  const body = tokenResponseBody(result.token, Date.now());
  runtime.logger.info('audit: token served', {
    serviceName: service,
    scope: body.scope,
    cache: result.cache,
    expiresAt: body.expires_at,
    tokenSha256: tokenFingerprint(result.token.accessToken),
  });
  return jsonResponse(200, body);
}

export const handler = middy<APIGatewayProxyEvent, APIGatewayProxyResult>(answerBeforeLambdaTimeout)
  .use(injectLambdaContext(runtime.logger, { resetKeys: true }))
  .use(logMetrics(runtime.metrics))
  .use(httpErrors({ logger: runtime.logger }))
  .use(allowedMethods())
  .handler(clientCredentials);
