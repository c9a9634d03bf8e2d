import { randomUUID } from 'node:crypto';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';

/** What is needed to build the event API Gateway's REST proxy integration would send to a Lambda. */
export interface ProxyEventInput {
  method: string;
  /** Concrete request path, e.g. `/api/v2/graph/client_credentials`. */
  path: string;
  /** Matched resource template, e.g. `/api/v2/{service}/client_credentials`. */
  resource: string;
  pathParameters?: Record<string, string>;
  headers?: Record<string, string | string[] | undefined>;
  query?: Record<string, string | string[] | undefined>;
  body?: string | null;
  sourceIp?: string;
  /** Caller identity as API Gateway fills it in after IAM (SigV4) authorization. */
  identity?: { userArn?: string; caller?: string; accountId?: string; accessKey?: string };
  stage?: string;
  /** The account that owns the API (requestContext.accountId); default 000000000000. */
  apiAccountId?: string;
}

function split(values: Record<string, string | string[] | undefined> | undefined): {
  single: Record<string, string> | null;
  multi: Record<string, string[]> | null;
} {
  if (!values) return { single: null, multi: null };
  const single: Record<string, string> = {};
  const multi: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) continue;
    const list = Array.isArray(v) ? v : [v];
    if (list.length === 0) continue;
    multi[k] = list;
    // Like API Gateway: the single-value map holds the last value.
    single[k] = list[list.length - 1] as string;
  }
  return Object.keys(single).length ? { single, multi } : { single: null, multi: null };
}

/**
 * Builds an API Gateway REST API (v1 payload) proxy event, as the deployed Lambda receives it. Local mode turns
 * each HTTP request into one of these and calls the production handler with it; tests use it too.
 */
export function buildProxyEvent(input: ProxyEventInput): APIGatewayProxyEvent {
  const headers = split(input.headers);
  const query = split(input.query);
  const stage = input.stage ?? 'local';
  const requestId = randomUUID();
  const now = Date.now();
  return {
    resource: input.resource,
    path: input.path,
    httpMethod: input.method.toUpperCase(),
    headers: headers.single ?? {},
    multiValueHeaders: headers.multi ?? {},
    queryStringParameters: query.single,
    multiValueQueryStringParameters: query.multi,
    pathParameters:
      input.pathParameters && Object.keys(input.pathParameters).length ? input.pathParameters : null,
    stageVariables: null,
    body: input.body ?? null,
    isBase64Encoded: false,
    requestContext: {
      accountId: input.apiAccountId ?? '000000000000',
      apiId: 'local',
      authorizer: null,
      protocol: 'HTTP/1.1',
      httpMethod: input.method.toUpperCase(),
      path: `/${stage}${input.path}`,
      stage,
      requestId,
      requestTimeEpoch: now,
      resourceId: 'local',
      resourcePath: input.resource,
      identity: {
        accessKey: input.identity?.accessKey ?? null,
        accountId: input.identity?.accountId ?? null,
        apiKey: null,
        apiKeyId: null,
        caller: input.identity?.caller ?? null,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: input.sourceIp ?? '127.0.0.1',
        user: input.identity?.caller ?? null,
        userAgent: (headers.single?.['user-agent'] ?? headers.single?.['User-Agent']) || null,
        userArn: input.identity?.userArn ?? null,
      },
    },
  };
}

/** A Lambda context for a local invocation; `timeoutMs` mirrors the function's configured timeout. */
export function localLambdaContext(functionName: string, timeoutMs = 29_000): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: '256',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
