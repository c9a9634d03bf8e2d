/**
 * Errors of the Token Broker client. Every class sets `name` and keeps the original error in `cause`. Messages
 * never contain a token or a secret.
 */

/** The broker's error body, `{"error": {"code", "message", "context"?}}`, or API Gateway's own refusal. */
export interface BrokerErrorBody {
  code: number;
  message: string;
  context?: Record<string, unknown>;
}

/** Base class of every error the client throws. */
export class TokenBrokerError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TokenBrokerError';
  }
}

/** The broker (or API Gateway in front of it) answered with an error status. */
export class TokenBrokerApiError extends TokenBrokerError {
  /** HTTP status. */
  readonly status: number;
  /** The API's error shape; an API Gateway refusal (`{"message": …}`) is normalized into it. */
  readonly error: BrokerErrorBody;
  /** API Gateway's `x-amzn-ErrorType` (e.g. `AccessDeniedException`), when it refused the request itself. */
  readonly errorType?: string;
  /** Seconds from `Retry-After`, when the broker sent one. */
  readonly retryAfterSeconds?: number;
  /** API Gateway's or the broker's request id, for the operator. */
  readonly requestId?: string;

  constructor(
    status: number,
    error: BrokerErrorBody,
    details: { errorType?: string; retryAfterSeconds?: number; requestId?: string } = {},
    options?: ErrorOptions,
  ) {
    super(error.message, options);
    this.name = 'TokenBrokerApiError';
    this.status = status;
    this.error = error;
    this.errorType = details.errorType;
    this.retryAfterSeconds = details.retryAfterSeconds;
    this.requestId = details.requestId;
  }
}

/** 401 or 403: the request is not signed, signed wrongly, or the caller may not invoke the route. */
export class TokenBrokerAccessDeniedError extends TokenBrokerApiError {
  constructor(...args: ConstructorParameters<typeof TokenBrokerApiError>) {
    super(...args);
    this.name = 'TokenBrokerAccessDeniedError';
  }
}

/** 404: no such service (or route). */
export class TokenBrokerNotFoundError extends TokenBrokerApiError {
  constructor(...args: ConstructorParameters<typeof TokenBrokerApiError>) {
    super(...args);
    this.name = 'TokenBrokerNotFoundError';
  }
}

/** 409 or 412: the name is taken, or the service changed since the version named by If-Match. */
export class TokenBrokerConflictError extends TokenBrokerApiError {
  constructor(...args: ConstructorParameters<typeof TokenBrokerApiError>) {
    super(...args);
    this.name = 'TokenBrokerConflictError';
  }
}

/** 429, 503 or 504 still failing when the retry budget ran out: try again later (see `retryAfterSeconds`). */
export class TokenBrokerUnavailableError extends TokenBrokerApiError {
  constructor(...args: ConstructorParameters<typeof TokenBrokerApiError>) {
    super(...args);
    this.name = 'TokenBrokerUnavailableError';
  }
}

/** The broker could not be reached, or did not answer within the request timeout. */
export class TokenBrokerNetworkError extends TokenBrokerError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TokenBrokerNetworkError';
  }
}

/** The broker answered 2xx with a body that is not what the API promises. */
export class TokenBrokerResponseError extends TokenBrokerError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TokenBrokerResponseError';
  }
}

/** No AWS credentials could be found to sign with (environment, profile, SSO, container or instance role). */
export class TokenBrokerCredentialsError extends TokenBrokerError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TokenBrokerCredentialsError';
  }
}

/** The typed error for an error status; the class says what a caller can do about it. */
export function apiErrorFor(
  status: number,
  error: BrokerErrorBody,
  details: { errorType?: string; retryAfterSeconds?: number; requestId?: string },
): TokenBrokerApiError {
  if (status === 401 || status === 403) return new TokenBrokerAccessDeniedError(status, error, details);
  if (status === 404) return new TokenBrokerNotFoundError(status, error, details);
  if (status === 409 || status === 412) return new TokenBrokerConflictError(status, error, details);
  if (status === 429 || status === 503 || status === 504)
    return new TokenBrokerUnavailableError(status, error, details);
  return new TokenBrokerApiError(status, error, details);
}
