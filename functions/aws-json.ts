import http from 'node:http';
import https from 'node:https';
import aws4 from 'aws4';
import type { AwsCallLimits } from './aws-clients';

/**
 * A small client for the AWS JSON protocol (DynamoDB, KMS, Secrets Manager: one signed `POST /` with an
 * `X-Amz-Target` header and a JSON body) and, for STS, the AWS Query protocol (a form-encoded `POST /` with
 * `Action` and `Version`, an XML answer), so that the token function does not load the AWS SDK v3 at cold start.
 * Measured on Node 24 (README, "Performance"): the SDK's DynamoDB client alone costs about as much module load as
 * the whole reference handler, this file and aws4 (SigV4 signing) about 3 ms on top of node:crypto and node:http.
 *
 * What it keeps of the SDK's behaviour, and how:
 * - credentials from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`: what
 *   Lambda gives a function), read at every call, signed with SigV4 by aws4;
 * - the endpoint from `AWS_ENDPOINT_URL_<SERVICE>` (local mode, tests), else `AWS_ENDPOINT_URL`, else the
 *   regional AWS endpoint;
 * - bounded time ({@link AwsCallLimits}, the same limits as the SDK clients had): connection, time to the
 *   response headers, silence while the body arrives; a timeout fails with a `TimeoutError`, the caller's abort
 *   signal with an `AbortError` (lib/errors.ts storeFailure() turns both into a StoreTimeoutError);
 * - `maxAttempts` attempts in all for network failures, timeouts, 5xx and throttling, with jittered backoff; never
 *   after an abort. An operation that is not idempotent (`idempotent: false`, KMS CreateKey: no client token) is
 *   retried only when throttled, since a timed-out attempt may have done its work; it waits for its answer as long
 *   as all attempts of another call would, so its worst case stays the same;
 * - service errors as errors named by the service's error type (`ConditionalCheckFailedException`, ...) with the
 *   SDK's `$fault` and `$metadata`, and the error body's fields (e.g. a ReturnValuesOnConditionCheckFailure item).
 */
export interface AwsJsonService {
  /** SigV4 signing name and endpoint prefix, e.g. `dynamodb`. */
  signingName: string;
  /** JSON: prefix of the `X-Amz-Target` header, e.g. `DynamoDB_20120810`. Query: the API `Version`. */
  targetPrefix: string;
  /** The JSON protocol's version, or `query` for the AWS Query protocol. */
  jsonVersion: '1.0' | '1.1' | 'query';
  /** The service-specific endpoint variable the AWS SDKs honour. */
  endpointVariable: string;
}

export const DYNAMODB_SERVICE: AwsJsonService = {
  signingName: 'dynamodb',
  targetPrefix: 'DynamoDB_20120810',
  jsonVersion: '1.0',
  endpointVariable: 'AWS_ENDPOINT_URL_DYNAMODB',
};
export const KMS_SERVICE: AwsJsonService = {
  signingName: 'kms',
  targetPrefix: 'TrentService',
  jsonVersion: '1.1',
  endpointVariable: 'AWS_ENDPOINT_URL_KMS',
};
/** STS speaks the AWS Query protocol; its answers' leaf elements come back as strings (see {@link queryResult}). */
export const STS_SERVICE: AwsJsonService = {
  signingName: 'sts',
  targetPrefix: '2011-06-15',
  jsonVersion: 'query',
  endpointVariable: 'AWS_ENDPOINT_URL_STS',
};
export const SECRETS_MANAGER_SERVICE: AwsJsonService = {
  signingName: 'secretsmanager',
  targetPrefix: 'secretsmanager',
  jsonVersion: '1.1',
  endpointVariable: 'AWS_ENDPOINT_URL_SECRETS_MANAGER',
};

/** Static credentials; without them the client reads the environment at every call. */
export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface AwsJsonClientOptions {
  service: AwsJsonService;
  limits: AwsCallLimits;
  /** Defaults to the service's endpoint variable, `AWS_ENDPOINT_URL`, then the regional AWS endpoint. */
  endpoint?: string;
  /** Defaults to `AWS_REGION`, then `AWS_DEFAULT_REGION`. */
  region?: string;
  credentials?: AwsCredentials;
  env?: NodeJS.ProcessEnv;
}

/** An error answer of an AWS service, shaped like the SDK's ServiceException. */
class AwsServiceError extends Error {
  readonly $fault: 'client' | 'server';
  readonly $metadata: { httpStatusCode: number; requestId?: string; attempts: number };
  constructor(
    name: string,
    message: string,
    status: number,
    requestId: string | undefined,
    attempts: number,
    body: Record<string, unknown>,
  ) {
    super(message);
    // The body's fields first (Item, CancellationReasons, ...), then ours, which they must not override.
    Object.assign(this, body);
    this.name = name;
    this.$fault = status >= 500 ? 'server' : 'client';
    this.$metadata = { httpStatusCode: status, requestId, attempts };
  }
}

/** The error types the SDK's standard retry strategy treats as throttling (retried with a longer backoff). */
const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'RequestThrottledException',
  'TooManyRequestsException',
  'ProvisionedThroughputExceededException',
  'TransactionInProgressException',
  'RequestLimitExceeded',
  'LimitExceededException',
  'RequestThrottled',
  'SlowDown',
]);

const namedError = (name: string, message: string): Error => Object.assign(new Error(message), { name });

/**
 * A Query protocol request body: `Action`, `Version` and the input's members, lists as `Name.member.N` (the only
 * shapes the broker sends: strings, numbers, lists of them).
 */
function queryBody(operation: string, version: string, input: unknown): string {
  const form = new URLSearchParams({ Action: operation, Version: version });
  for (const [name, value] of Object.entries((input ?? {}) as Record<string, unknown>)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) form.append(`${name}.member.${i + 1}`, String(v));
    } else if (typeof value === 'object')
      throw new Error(`${operation}: nested input ${name} is not supported`);
    else form.append(name, String(value));
  }
  return form.toString();
}

const XML_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const xmlText = (text: string): string =>
  text.replace(/&(lt|gt|amp|quot|apos);/g, (_, e: string) => XML_ENTITIES[e] ?? '');

/** The leaf elements of a Query answer's `<OperationResult>` (or of an `<Error>`), as strings by element name. */
function queryResult(xml: string, element: string): Record<string, string> {
  const body = new RegExp(`<${element}(?:\\s[^>]*)?>([\\s\\S]*)</${element}>`).exec(xml)?.[1] ?? '';
  const leaves: Record<string, string> = {};
  for (const m of body.matchAll(/<([A-Za-z]+)>([^<]*)<\/\1>/g))
    leaves[m[1] as string] ??= xmlText(m[2] as string);
  return leaves;
}

/** One attempt's outcome: the parsed body, or an error and whether another attempt may help. */
type Attempt = { ok: true; body: unknown } | { ok: false; error: Error; retryable: boolean };

/** A signed JSON-protocol client for one AWS service (see the comment at the top of this file). */
export class AwsJsonClient {
  private readonly service: AwsJsonService;
  private readonly limits: AwsCallLimits;
  /** Where the calls go. */
  readonly url: URL;
  private readonly region: string;
  private readonly credentials?: AwsCredentials;
  private readonly env: NodeJS.ProcessEnv;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;

  constructor(options: AwsJsonClientOptions) {
    this.service = options.service;
    this.limits = options.limits;
    this.env = options.env ?? process.env;
    const region = options.region ?? this.env.AWS_REGION ?? this.env.AWS_DEFAULT_REGION;
    if (!region) throw new Error('AWS_REGION is not set');
    this.region = region;
    const endpoint =
      options.endpoint ??
      this.env[this.service.endpointVariable] ??
      this.env.AWS_ENDPOINT_URL ??
      `https://${this.service.signingName}.${region}.amazonaws.com`;
    this.url = new URL(endpoint);
    this.credentials = options.credentials;
    const secure = this.url.protocol === 'https:';
    this.transport = secure ? https : http;
    // Keep-alive: a hit then costs one round trip on an open connection, as with the SDK's handler.
    this.agent = new (secure ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: 50 });
  }

  /** Closes the kept-alive connections (tests, shutdown). */
  destroy(): void {
    this.agent.destroy();
  }

  /** Calls `operation` (e.g. `GetItem`) with `input`; resolves with the parsed answer. */
  async call<T>(
    operation: string,
    input: unknown,
    options: { signal?: AbortSignal; idempotent?: boolean } = {},
  ): Promise<T> {
    const body =
      this.service.jsonVersion === 'query'
        ? queryBody(operation, this.service.targetPrefix, input)
        : JSON.stringify(input);
    const once = options.idempotent === false;
    const headersWithinMs = this.limits.requestTimeoutMs * (once ? this.limits.maxAttempts : 1);
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.attempt(operation, body, attempt, headersWithinMs, options.signal);
      if (outcome.ok) return outcome.body as T;
      const throttled = THROTTLING.has(outcome.error.name);
      const retryable = outcome.retryable && (!once || throttled);
      if (!retryable || attempt >= this.limits.maxAttempts || options.signal?.aborted) throw outcome.error;
      // Full jitter, as the SDK's standard retry strategy (base 100 ms, 500 ms when throttled).
      await new Promise((resolve) =>
        setTimeout(resolve, Math.random() * (throttled ? 500 : 100) * 2 ** (attempt - 1)),
      );
    }
  }

  private currentCredentials(): AwsCredentials {
    if (this.credentials) return this.credentials;
    const { AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN } = this.env;
    if (!AWS_ACCESS_KEY_ID || !AWS_SECRET_ACCESS_KEY) {
      throw new Error('no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set');
    }
    return {
      accessKeyId: AWS_ACCESS_KEY_ID,
      secretAccessKey: AWS_SECRET_ACCESS_KEY,
      sessionToken: AWS_SESSION_TOKEN,
    };
  }

  private attempt(
    operation: string,
    body: string,
    attempt: number,
    headersWithinMs: number,
    signal?: AbortSignal,
  ): Promise<Attempt> {
    const signed = aws4.sign(
      {
        service: this.service.signingName,
        region: this.region,
        method: 'POST',
        host: this.url.host,
        path: this.url.pathname,
        body,
        headers:
          this.service.jsonVersion === 'query'
            ? { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8' }
            : {
                'Content-Type': `application/x-amz-json-${this.service.jsonVersion}`,
                'X-Amz-Target': `${this.service.targetPrefix}.${operation}`,
              },
      },
      this.currentCredentials(),
    );
    return new Promise<Attempt>((resolve) => {
      let settled = false;
      const timers: NodeJS.Timeout[] = [];
      const finish = (outcome: Attempt) => {
        if (settled) return;
        settled = true;
        for (const timer of timers) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(outcome);
      };
      const fail = (error: Error, retryable: boolean) => {
        finish({ ok: false, error, retryable });
        request.destroy();
      };
      const timeout = (what: string, ms: number) =>
        setTimeout(() => fail(namedError('TimeoutError', `${what} took longer than ${ms} ms`), true), ms);
      const onAbort = () => fail(namedError('AbortError', 'the call was aborted'), false);
      if (signal?.aborted) {
        resolve({ ok: false, error: namedError('AbortError', 'the call was aborted'), retryable: false });
        return;
      }
      const request = this.transport.request({
        protocol: this.url.protocol,
        hostname: this.url.hostname,
        port: this.url.port,
        method: 'POST',
        path: signed.path,
        headers: signed.headers,
        agent: this.agent,
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      const awaitHeaders = () => timers.push(timeout('the response', headersWithinMs));
      request.on('socket', (socket) => {
        if (!socket.connecting) return awaitHeaders();
        timers.push(timeout('connecting', this.limits.connectionTimeoutMs));
        socket.once('connect', () => {
          clearTimeout(timers.pop());
          awaitHeaders();
        });
      });
      request.on('error', (error) => fail(error, true));
      request.on('response', (response) => {
        for (const timer of timers.splice(0)) clearTimeout(timer);
        response.setTimeout(this.limits.socketTimeoutMs, () =>
          fail(
            namedError('TimeoutError', `the response body stalled for ${this.limits.socketTimeoutMs} ms`),
            true,
          ),
        );
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', (error) => fail(error, true));
        // A connection closed in the middle of the body (after 'end' this is a no-op: the attempt has settled).
        response.on('close', () => {
          if (!response.complete) fail(new Error(`${operation}: the connection closed mid-answer`), true);
        });
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          if (this.service.jsonVersion === 'query')
            return finish(this.queryOutcome(operation, status, text, attempt, response.headers));
          let parsed: Record<string, unknown> = {};
          try {
            parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
          } catch {
            if (status < 300)
              return finish({
                ok: false,
                error: new Error(`${operation}: answer is not JSON`),
                retryable: false,
              });
          }
          if (status >= 200 && status < 300) return finish({ ok: true, body: parsed });
          const header = response.headers['x-amzn-errortype'];
          const rawType = String(
            parsed.__type ?? (Array.isArray(header) ? header[0] : header) ?? `Http${status}Error`,
          );
          const name = (rawType.split('#').pop() ?? rawType).split(':')[0] as string;
          const { __type: _type, message, Message, ...rest } = parsed;
          const error = new AwsServiceError(
            name,
            String(message ?? Message ?? `${operation} failed with HTTP ${status}`),
            status,
            String(response.headers['x-amzn-requestid'] ?? '') || undefined,
            attempt,
            rest,
          );
          finish({ ok: false, error, retryable: status >= 500 || THROTTLING.has(name) });
        });
      });
      request.end(signed.body);
    });
  }

  /** A Query protocol answer: the result's leaf elements, or the `<Error>`'s `Code` and `Message`. */
  private queryOutcome(
    operation: string,
    status: number,
    xml: string,
    attempt: number,
    headers: http.IncomingHttpHeaders,
  ): Attempt {
    if (status >= 200 && status < 300) return { ok: true, body: queryResult(xml, `${operation}Result`) };
    const { Code, Message } = queryResult(xml, 'Error');
    const name = Code ?? `Http${status}Error`;
    const requestId = queryResult(xml, 'ErrorResponse').RequestId ?? headers['x-amzn-requestid'];
    const error = new AwsServiceError(
      name,
      Message ?? `${operation} failed with HTTP ${status}`,
      status,
      requestId === undefined ? undefined : String(requestId),
      attempt,
      {},
    );
    return { ok: false, error, retryable: status >= 500 || THROTTLING.has(name) };
  }
}
