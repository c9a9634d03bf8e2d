/**
 * One signed call to the broker's API, retried within a budget: SigV4 for `execute-api` with the AWS SDK's own
 * signer, `fetch` for the request, and the broker's (or API Gateway's) error body turned into a typed error.
 */
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import {
  apiErrorFor,
  type BrokerErrorBody,
  TokenBrokerApiError,
  TokenBrokerCredentialsError,
  TokenBrokerNetworkError,
} from './errors';

/** How long to keep trying a call that fails with 429, 503 or 504. */
export interface RetryOptions {
  /** Total time for one call, waits included (default 15 s). No wait is started that would end after it. */
  budgetMs?: number;
  /** Attempts per call, the first included (default 4). */
  maxAttempts?: number;
  /** Backoff: full jitter over `baseDelayMs · 2^(attempt-1)`, capped at `maxDelayMs` (defaults 200 ms, 5 s). */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

/** Time as the client sees it; injected in tests so that nothing waits for real. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface TransportOptions {
  endpoint: string;
  region: string;
  credentials: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  fetch: typeof fetch;
  clock: Clock;
  random: () => number;
  requestTimeoutMs: number;
  retry: Required<RetryOptions>;
  onRetry?: (retry: RetryNotice) => void;
}

/** What a retry is about to do (for logging). */
export interface RetryNotice {
  /** The attempt about to be made (2 for the first retry). */
  attempt: number;
  delayMs: number;
  /** Why: the status and message, or the network failure. */
  reason: string;
}

/** One API call: the path below the endpoint (`/api/v2/…`), and whether repeating it is harmless. */
export interface ApiCall {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  /** Repeating the call has the same effect as making it once (so a 504 or a lost connection may be retried). */
  idempotent: boolean;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  body: unknown;
}

function errorBodyOf(status: number, body: unknown): BrokerErrorBody {
  const b = body as { error?: Partial<BrokerErrorBody>; message?: unknown; Message?: unknown } | null;
  if (b && typeof b === 'object' && b.error && typeof b.error.message === 'string') {
    return {
      code: typeof b.error.code === 'number' ? b.error.code : status,
      message: b.error.message,
      ...(b.error.context && typeof b.error.context === 'object' ? { context: b.error.context } : {}),
    };
  }
  // API Gateway's own refusals: {"message": …}, or {"Message": …} for a resource policy's explicit deny.
  const message = b && typeof b === 'object' ? (b.message ?? b.Message) : undefined;
  if (typeof message === 'string') return { code: status, message };
  return { code: status, message: `HTTP ${status} without an error body from the broker` };
}

function retryAfterSecondsOf(headers: Headers, now: number): number | undefined {
  const value = headers.get('retry-after');
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - now) / 1000));
}

/** Sends signed calls to one broker endpoint. */
export class SignedTransport {
  private readonly signer: SignatureV4;
  private readonly base: URL;

  constructor(private readonly options: TransportOptions) {
    this.base = new URL(options.endpoint.endsWith('/') ? options.endpoint : `${options.endpoint}/`);
    this.signer = new SignatureV4({
      service: 'execute-api',
      region: options.region,
      credentials: options.credentials,
      sha256: Sha256,
      applyChecksum: false,
    });
  }

  /** Makes the call, retrying 429/503 (and 504 or a lost connection when idempotent) within the budget. */
  async send(call: ApiCall): Promise<ApiResponse> {
    const { clock, random, retry } = this.options;
    const deadline = clock.now() + retry.budgetMs;
    for (let attempt = 1; ; attempt++) {
      let failure: TokenBrokerApiError | TokenBrokerNetworkError;
      let retryAfterMs: number | undefined;
      try {
        const response = await this.once(call);
        if (response.status < 400) return response;
        const retryAfterSeconds = retryAfterSecondsOf(response.headers, clock.now());
        const error = errorBodyOf(response.status, response.body);
        const contextRequestId = error.context?.request_id;
        failure = apiErrorFor(response.status, error, {
          errorType: response.headers.get('x-amzn-errortype')?.split(':')[0],
          retryAfterSeconds,
          requestId:
            response.headers.get('x-amzn-requestid') ??
            (typeof contextRequestId === 'string' ? contextRequestId : undefined),
        });
        const retryable =
          response.status === 429 || response.status === 503 || (response.status === 504 && call.idempotent);
        if (!retryable) throw failure;
        retryAfterMs = retryAfterSeconds === undefined ? undefined : retryAfterSeconds * 1000;
      } catch (error) {
        if (!(error instanceof TokenBrokerNetworkError) || !call.idempotent) throw error;
        failure = error;
      }
      const backoff = random() * Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (attempt - 1));
      // Retry-After is a floor; the jitter on top keeps a fleet of callers from coming back at the same instant.
      const delay = retryAfterMs === undefined ? backoff : retryAfterMs + random() * retry.baseDelayMs;
      if (attempt >= retry.maxAttempts || clock.now() + delay > deadline) throw failure;
      const reason =
        failure instanceof TokenBrokerApiError
          ? `HTTP ${failure.status}: ${failure.message}`
          : failure.message;
      this.options.onRetry?.({ attempt: attempt + 1, delayMs: delay, reason });
      await clock.sleep(delay);
    }
  }

  private async once(call: ApiCall): Promise<ApiResponse> {
    const url = new URL(call.path.replace(/^\//, ''), this.base);
    for (const [k, v] of Object.entries(call.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const body = call.body === undefined ? undefined : JSON.stringify(call.body);
    const headers: Record<string, string> = {
      host: url.host,
      accept: 'application/json',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...call.headers,
    };
    let signed: Awaited<ReturnType<SignatureV4['sign']>>;
    try {
      signed = await this.signer.sign(
        {
          method: call.method,
          protocol: url.protocol,
          hostname: url.hostname,
          port: url.port ? Number(url.port) : undefined,
          path: url.pathname,
          query: Object.fromEntries(url.searchParams),
          headers,
          body,
        },
        // Signatures carry the wall-clock time: the one API Gateway checks, whatever clock the caches use.
        { signingDate: new Date() },
      );
    } catch (error) {
      throw new TokenBrokerCredentialsError(
        `no AWS credentials to sign with: ${(error as Error).message ?? String(error)}`,
        { cause: error },
      );
    }
    // fetch sends the Host header itself, with the same value.
    const { host: _host, ...sendHeaders } = signed.headers;
    let response: Response;
    let text: string;
    try {
      response = await this.options.fetch(url, {
        method: call.method,
        headers: sendHeaders,
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.requestTimeoutMs),
      });
      text = await response.text();
    } catch (error) {
      const reason =
        (error as Error).name === 'TimeoutError'
          ? `no answer within ${this.options.requestTimeoutMs} ms`
          : ((error as { cause?: { code?: string; message?: string } }).cause?.code ??
            (error as Error).message);
      throw new TokenBrokerNetworkError(`cannot reach the broker at ${this.base.origin}: ${reason}`, {
        cause: error,
      });
    }
    let parsed: unknown;
    try {
      parsed = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: response.status, headers: response.headers, body: parsed };
  }
}
