import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import * as z from 'zod';
import { callerOf, tokenFingerprint } from '../lib/audit';
import type { ConsentRequestContext } from '../lib/authorization-code/consent';
import {
  CONSENT_PAGE_HEADERS,
  consentFailurePage,
  consentSuccessPage,
  internalErrorPage,
} from '../lib/authorization-code/consent-pages';
import { UserKeySchema } from '../lib/authorization-code/delegated-config';
import { ConsentFailedError, ValidationError } from '../lib/errors';
import { allowedMethods, httpErrors, jsonResponse } from '../lib/http';
import { ServiceNameSchema } from '../lib/service-config';
import { isoSeconds, tokenResponseBody } from '../lib/token-response';
import { parseOrThrow } from '../lib/validation';
import { createDelegatedRuntime } from './delegated-runtime';

const runtime = createDelegatedRuntime();

const MinTtlSchema = z.coerce
  .number({ error: 'must be a whole number of seconds' })
  .int('must be a whole number of seconds')
  .min(0, 'must be at least 0')
  .max(3600, 'must be at most 3600');
const LoginHintSchema = z.string().min(1).max(256, 'must be at most 256 characters');
const ReturnToSchema = z.string().min(1).max(2048, 'must be at most 2048 characters');

/** The query parameters, refusing any the route does not know. */
function queryOf(
  event: APIGatewayProxyEvent,
  allowed: readonly string[],
): Record<string, string | undefined> {
  const query = event.queryStringParameters ?? {};
  const unknown = Object.keys(query).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) throw new ValidationError(`unknown query parameter: ${unknown.join(', ')}`);
  return query;
}

/**
 * Who asks and where the API lives: the public base URL when configured, else API Gateway's domain and stage (the
 * stage is part of the URL only on the default execute-api domain).
 */
function requestContextOf(event: APIGatewayProxyEvent): ConsentRequestContext {
  const identity = callerOf(event);
  const domain = event.requestContext?.domainName ?? 'localhost';
  const stage = event.requestContext?.stage;
  const base =
    runtime.env.TOKEN_BROKER_PUBLIC_BASE_URL ??
    `https://${domain}${/\.execute-api\.[a-z0-9-]+\.amazonaws\.com$/.test(domain) && stage ? `/${stage}` : ''}`;
  return { caller: identity.userArn ?? identity.caller ?? 'unknown', apiBaseUrl: base };
}

/** `GET /api/v2/{service}/authorize?user=…`: starts a consent, answers the URL to send the user to. */
async function authorize(event: APIGatewayProxyEvent, service: string): Promise<APIGatewayProxyResult> {
  const query = queryOf(event, ['user', 'return_to', 'login_hint']);
  const user = parseOrThrow(UserKeySchema, query.user, 'user');
  const start = await runtime.consent.start(service, user, requestContextOf(event), {
    ...(query.return_to !== undefined
      ? { returnTo: parseOrThrow(ReturnToSchema, query.return_to, 'return_to') }
      : {}),
    ...(query.login_hint !== undefined
      ? { loginHint: parseOrThrow(LoginHintSchema, query.login_hint, 'login_hint') }
      : {}),
  });
  runtime.logger.info('audit: consent started', { serviceName: service, userKey: user });
  return jsonResponse(200, {
    authorization_url: start.authorizationUrl,
    state_expires_at: isoSeconds(start.stateExpiresAt),
  });
}

/**
 * `GET /api/v2/{service}/sso`: the callback the user's browser brings the code to (no IAM). Always an HTML page
 * (or a 303 to an allowed return_to); failures say what happened, never echo what the browser brought.
 */
async function sso(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const serviceParam = event.pathParameters?.service ?? '';
  // No such service can have started a consent, so whatever state came with it is unknown.
  if (!ServiceNameSchema.safeParse(serviceParam).success) return consentFailurePage('state_unknown');
  const service = serviceParam;
  try {
    const q = event.queryStringParameters ?? {};
    const result = await runtime.consent.complete(service, {
      code: q.code,
      state: q.state,
      error: q.error,
      error_description: q.error_description,
    });
    if (result.returnTo) {
      return { statusCode: 303, headers: { ...CONSENT_PAGE_HEADERS, Location: result.returnTo }, body: '' };
    }
    return consentSuccessPage(result.grant.preferredUsername ?? result.grant.oid, service);
  } catch (error) {
    if (error instanceof ConsentFailedError) {
      runtime.logger.info('consent callback refused', { serviceName: service, reason: error.reason });
      return consentFailurePage(error.reason);
    }
    if (error instanceof ValidationError) {
      // e.g. the service's authority is no longer allowed: nothing was connected; the operator must look.
      runtime.logger.warn('consent callback refused', { serviceName: service, reason: error.message });
      return consentFailurePage('redemption_failed');
    }
    const requestId = event.requestContext?.requestId ?? 'unknown';
    runtime.logger.error('consent callback failed', { requestId, error: error as Error });
    return internalErrorPage(requestId);
  }
}

/** `GET|DELETE /api/v2/{service}/user_token?user=…`: a delegated token for the user, or forget the user. */
async function userToken(event: APIGatewayProxyEvent, service: string): Promise<APIGatewayProxyResult> {
  if (event.httpMethod === 'DELETE') {
    const user = parseOrThrow(UserKeySchema, queryOf(event, ['user']).user, 'user');
    await runtime.userTokens.forget(service, user);
    return jsonResponse(200, { success: true, message: 'User authorization removed.' });
  }
  const query = queryOf(event, ['user', 'scope', 'min_ttl']);
  const user = parseOrThrow(UserKeySchema, query.user, 'user');
  const result = await runtime.userTokens.getUserToken(service, user, requestContextOf(event), {
    ...(query.scope !== undefined ? { scope: query.scope } : {}),
    ...(query.min_ttl !== undefined
      ? { minTtlSeconds: parseOrThrow(MinTtlSchema, query.min_ttl, 'min_ttl') }
      : {}),
  });
  const body = tokenResponseBody(result.token, Date.now());
  runtime.logger.info('audit: user token served', {
    serviceName: service,
    userKey: user,
    scope: body.scope,
    cache: result.cache,
    expiresAt: body.expires_at,
    tokenSha256: tokenFingerprint(result.token.accessToken),
  });
  return jsonResponse(200, {
    ...body,
    user: {
      key: user,
      oid: result.grant.oid,
      tid: result.grant.tid,
      ...(result.grant.preferredUsername !== undefined
        ? { preferred_username: result.grant.preferredUsername }
        : {}),
    },
  });
}

/** The routes of the authorization code flow (lib/routes.ts `delegated`). */
async function delegated(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  if (event.resource === '/api/v2/{service}/sso') return sso(event);
  runtime.logger.appendKeys({ caller: callerOf(event) });
  if (event.resource === '/api/v2/system/service/{name}/users') {
    const name = parseOrThrow(ServiceNameSchema, event.pathParameters?.name, 'name');
    return jsonResponse(200, { resource: await runtime.userTokens.listUsers(name) });
  }
  const service = parseOrThrow(ServiceNameSchema, event.pathParameters?.service, 'service');
  if (event.resource === '/api/v2/{service}/authorize') return authorize(event, service);
  return userToken(event, service);
}

export const handler = middy<APIGatewayProxyEvent, APIGatewayProxyResult>()
  .use(captureLambdaHandler(runtime.tracer, { captureResponse: false }))
  .use(injectLambdaContext(runtime.logger, { resetKeys: true }))
  .use(logMetrics(runtime.metrics))
  .use(httpErrors({ logger: runtime.logger }))
  .use(allowedMethods())
  .handler(delegated);
