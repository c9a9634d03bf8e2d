import type { Logger } from '@aws-lambda-powertools/logger';
import type { MiddlewareObj } from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import {
  BrokerError,
  ConflictError,
  ConsentFailedError,
  CredentialUnavailableError,
  DeadlineExceededError,
  GrantNotEnabledError,
  IdentityProviderError,
  IdentityProviderTimeoutError,
  IdentityProviderUnavailableError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  PreconditionFailedError,
  ServiceInactiveError,
  StoreTimeoutError,
  UnsupportedMediaTypeError,
  UserConsentRequiredError,
  ValidationError,
} from './errors';
import { ROUTES } from './routes';

/**
 * The one place where errors become HTTP statuses. Order matters: subclasses before their parents.
 */
const STATUS_BY_ERROR: ReadonlyArray<readonly [abstract new (...args: never[]) => Error, number]> = [
  [GrantNotEnabledError, 400],
  [ValidationError, 400],
  [ConsentFailedError, 400],
  [UserConsentRequiredError, 401],
  [ServiceInactiveError, 403],
  [NotFoundError, 404],
  [MethodNotAllowedError, 405],
  [ConflictError, 409],
  [PreconditionFailedError, 412],
  [PayloadTooLargeError, 413],
  [UnsupportedMediaTypeError, 415],
  [IdentityProviderError, 502],
  [CredentialUnavailableError, 502],
  [IdentityProviderUnavailableError, 503],
  [IdentityProviderTimeoutError, 504],
  [DeadlineExceededError, 504],
];

/** Status of a backing store that did not answer in time (not a BrokerError: its own message stays internal). */
const STORE_TIMEOUT_STATUS = 504;

/** Headers on every response: tokens must not be cached by intermediaries, nor content sniffed. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'application/json',
  'Cache-Control': 'no-store',
  Pragma: 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  'Strict-Transport-Security': 'max-age=31536000; includeSubDomains',
};

/** A JSON response with the security headers. */
export function jsonResponse(
  statusCode: number,
  body: unknown,
  headers: Record<string, string> = {},
): APIGatewayProxyResult {
  return { statusCode, headers: { ...SECURITY_HEADERS, ...headers }, body: JSON.stringify(body) };
}

/** middy's own HTTP errors (from its body parser): a status and a message fit for callers. */
interface ExposedHttpError {
  statusCode: number;
  expose: true;
  message: string;
}

function isExposedHttpError(error: unknown): error is ExposedHttpError {
  const e = error as Partial<ExposedHttpError> | null;
  return (
    typeof e === 'object' &&
    e !== null &&
    e.expose === true &&
    typeof e.statusCode === 'number' &&
    e.statusCode >= 400 &&
    e.statusCode < 500
  );
}

/**
 * Builds the error response in the API's one shape, `{"error": {"code", "message", "context"?}}`. Anything
 * not known to be safe becomes a generic 500 naming only the request id.
 */
export function errorResponse(error: unknown, requestId: string): APIGatewayProxyResult {
  if (error instanceof BrokerError) {
    const status = STATUS_BY_ERROR.find(([type]) => error instanceof type)?.[1] ?? 500;
    const headers: Record<string, string> = {};
    if (error instanceof IdentityProviderUnavailableError && error.retryAfterSeconds !== undefined) {
      headers['Retry-After'] = String(error.retryAfterSeconds);
    }
    if (error instanceof MethodNotAllowedError) headers.Allow = error.allow.join(', ');
    const context = error.context
      ? Object.fromEntries(Object.entries(error.context).filter(([, v]) => v !== undefined))
      : undefined;
    return jsonResponse(
      status,
      {
        error: {
          code: status,
          message: error.message,
          ...(context && Object.keys(context).length ? { context } : {}),
        },
      },
      headers,
    );
  }
  if (error instanceof StoreTimeoutError) {
    // The operation's name stays in the log; the caller learns only that the broker's storage was too slow.
    return jsonResponse(STORE_TIMEOUT_STATUS, {
      error: {
        code: STORE_TIMEOUT_STATUS,
        message:
          'the broker’s storage (DynamoDB, Secrets Manager or KMS) did not answer in time; retry later',
      },
    });
  }
  if (isExposedHttpError(error)) {
    return jsonResponse(error.statusCode, { error: { code: error.statusCode, message: error.message } });
  }
  return jsonResponse(500, {
    error: {
      code: 500,
      message: `internal error; quote request id ${requestId} to the operator`,
      context: { request_id: requestId },
    },
  });
}

/** The API Gateway request id, or the Lambda one when the event has none. */
function requestIdOf(event: APIGatewayProxyEvent | undefined, awsRequestId: string | undefined): string {
  return event?.requestContext?.requestId ?? awsRequestId ?? 'unknown';
}

/**
 * middy middleware: turns any error into the API's error response and logs it. Internal errors are logged with
 * their details (never exposed); caller errors are logged at info without stack noise.
 */
export function httpErrors(options: {
  logger: Logger;
}): MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult> {
  return {
    onError: async (request) => {
      const { error } = request;
      const requestId = requestIdOf(request.event, request.context?.awsRequestId);
      const response = errorResponse(error, requestId);
      if (response.statusCode >= 500 && !(error instanceof BrokerError)) {
        options.logger.error('request failed', { requestId, error: error as Error });
      } else {
        // Only the message and context: they are written for callers and carry no secrets. middy's own errors
        // keep the raw body in `cause`, which must never reach a log.
        options.logger.info('request refused', {
          requestId,
          status: response.statusCode,
          errorName: (error as Error | null)?.name,
          reason: (error as Error | null)?.message,
        });
      }
      request.response = response;
    },
  };
}

/**
 * middy middleware run first: refuses a method the route does not serve (405 with Allow), before the body is
 * looked at, so a wrong method is never answered with a body error. Routes come from lib/routes.ts.
 */
export function allowedMethods(): MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult> {
  return {
    before: async (request) => {
      const route = ROUTES.find((r) => r.resource === request.event.resource);
      if (!route) throw new NotFoundError(`no route for ${request.event.resource}`);
      if (!route.methods.includes(request.event.httpMethod)) {
        throw new MethodNotAllowedError(
          `method ${request.event.httpMethod} is not allowed here`,
          route.methods,
        );
      }
    },
  };
}

/** Largest request body accepted, in bytes. */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * middy middleware run before body parsing: refuses bodies over `maxBytes` with 413, so an oversize body is never
 * parsed or logged.
 */
export function bodyLimit(
  maxBytes = MAX_BODY_BYTES,
): MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult> {
  return {
    before: async (request) => {
      const body = request.event.body;
      if (typeof body !== 'string') return;
      const bytes = request.event.isBase64Encoded
        ? Math.floor((body.length * 3) / 4)
        : Buffer.byteLength(body);
      if (bytes > maxBytes) throw new PayloadTooLargeError(`request body is larger than ${maxBytes} bytes`);
    },
  };
}
