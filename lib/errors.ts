/**
 * Named errors of the broker. Each class is mapped to exactly one HTTP status in `lib/http.ts`; nothing else
 * decides status codes. Messages of these errors are written for callers: they name the problem and never
 * contain a secret or a token. Anything that is not a BrokerError is an internal error and reaches callers only
 * as a generic 500.
 */

/** Extra, caller-visible facts about an error (the `context` object of the error body). */
export type ErrorContext = Record<string, unknown>;

export interface BrokerErrorOptions extends ErrorOptions {
  context?: ErrorContext;
}

/** Base class of every error whose message may be shown to the caller. */
export class BrokerError extends Error {
  readonly context?: ErrorContext;
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'BrokerError';
    this.context = options?.context;
  }
}

/** The request is malformed or names an invalid value (400). */
export class ValidationError extends BrokerError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'ValidationError';
  }
}

/** The service exists but does not allow the requested grant (400). */
export class GrantNotEnabledError extends ValidationError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'GrantNotEnabledError';
  }
}

/** The request body is larger than the broker accepts (413). */
export class PayloadTooLargeError extends BrokerError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'PayloadTooLargeError';
  }
}

/** The request body is not JSON where JSON is required (415). */
export class UnsupportedMediaTypeError extends BrokerError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'UnsupportedMediaTypeError';
  }
}

/** A named thing (service, route) does not exist (404). */
export class NotFoundError extends BrokerError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'NotFoundError';
  }
}

/** The route exists but not with this method (405). */
export class MethodNotAllowedError extends BrokerError {
  readonly allow: readonly string[];
  constructor(message: string, allow: readonly string[], options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'MethodNotAllowedError';
    this.allow = allow;
  }
}

/** The service exists but is switched off (`is_active: false`) (403). */
export class ServiceInactiveError extends BrokerError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'ServiceInactiveError';
  }
}

/** The thing to create exists already, or changed under a concurrent writer (409). */
export class ConflictError extends BrokerError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'ConflictError';
  }
}

/** The caller's If-Match names a version that is no longer current (412). */
export class PreconditionFailedError extends BrokerError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'PreconditionFailedError';
  }
}

/**
 * The user has no usable delegated grant (never consented, or the refresh token is dead) (401). The context names
 * the `reason` and carries a fresh `authorization_url` to send the user to.
 */
export class UserConsentRequiredError extends BrokerError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'UserConsentRequiredError';
  }
}

/** Reasons a consent callback fails; each has its own page text. */
export type ConsentFailureReason =
  | 'state_missing'
  | 'state_unknown'
  | 'state_expired'
  | 'state_other_service'
  | 'authorization_denied'
  | 'authorization_error'
  | 'redemption_failed'
  | 'id_token_invalid';

/** The consent callback cannot complete (400): the browser gets a page saying what happened and what to do. */
export class ConsentFailedError extends BrokerError {
  readonly reason: ConsentFailureReason;
  constructor(reason: ConsentFailureReason, message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'ConsentFailedError';
    this.reason = reason;
  }
}

/** Entra answered with an error or with something that is not a valid token response (502). */
export class IdentityProviderError extends BrokerError {
  /** True for failures worth retrying (5xx, connection reset); false for Entra's considered refusals (4xx). */
  readonly retryable: boolean;
  constructor(message: string, options?: BrokerErrorOptions & { retryable?: boolean }) {
    super(message, options);
    this.name = 'IdentityProviderError';
    this.retryable = options?.retryable ?? false;
  }
}

/**
 * The service's credential could not be used before Entra was even asked: KMS refused to sign, STS refused a web
 * identity token (502). The message names what the administrator must fix, never key material or tokens.
 */
export class CredentialUnavailableError extends BrokerError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'CredentialUnavailableError';
  }
}

/** Entra is throttling or temporarily unavailable (503); `retryAfterSeconds` is passed on to the caller. */
export class IdentityProviderUnavailableError extends BrokerError {
  readonly retryAfterSeconds?: number;
  constructor(message: string, options?: BrokerErrorOptions & { retryAfterSeconds?: number }) {
    super(message, options);
    this.name = 'IdentityProviderUnavailableError';
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/**
 * The request's time budget (taken by the handler from the Lambda context, see functions/request-budget.ts) ran
 * out before an answer was ready (504). The API answers with this before Lambda's timeout and before API
 * Gateway's 29 s limit, never with their bare errors.
 */
export class DeadlineExceededError extends BrokerError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'DeadlineExceededError';
  }
}

/** Entra did not answer in time (504). */
export class IdentityProviderTimeoutError extends BrokerError {
  constructor(message: string, options?: BrokerErrorOptions) {
    super(message, options);
    this.name = 'IdentityProviderTimeoutError';
  }
}

/**
 * A backing store (DynamoDB, Secrets Manager) failed. Not a BrokerError: its details stay in the log and the
 * caller sees a generic 500 with the request id.
 */
export class StoreError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StoreError';
  }
}

/**
 * A backing store did not answer in time: the SDK's per-call timeout fired, or the request's time budget ran out
 * (its AbortSignal aborted the call). Still a StoreError, so that every degrade-to-memory path starts on a hang
 * exactly as on a refused connection; lib/http.ts answers it with 504 and a fixed message.
 */
export class StoreTimeoutError extends StoreError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StoreTimeoutError';
  }
}

/** Whether an AWS SDK failure is a timeout (per-call limit) or an abort (the request's budget ran out). */
function isTimeoutOrAbort(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === 'TimeoutError' || name === 'AbortError';
}

/**
 * Wraps an AWS SDK failure of a store adapter: a StoreTimeoutError for timeouts and aborts, a StoreError
 * otherwise. `message` names the operation and never a secret.
 */
export function storeFailure(message: string, cause: unknown): StoreError {
  return isTimeoutOrAbort(cause)
    ? new StoreTimeoutError(message, { cause })
    : new StoreError(message, { cause });
}

/** Whether `error` is an AWS service's error of the given type (e.g. `ResourceNotFoundException`). */
export function isAwsError(error: unknown, type: string): boolean {
  return (error as { name?: unknown } | null)?.name === type;
}
