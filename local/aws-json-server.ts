/**
 * The HTTP side of a local AWS service that speaks AWS JSON 1.1 (`POST /` with `X-Amz-Target: <prefix>.<Operation>`
 * and a JSON body), shared by the local KMS and Secrets Manager servers. It reads and parses the request, routes it
 * to an operation, and writes the result or the error in the shape the AWS SDK expects; `startLocalAwsServer` also
 * gives a service its private store directory and ARN prefix. What the operations do is left to each service
 * (their members are read with local/aws-json-request.ts, their files with local/private-files.ts).
 *
 * Local use only: SigV4 signatures are deliberately not verified, so any credentials work.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { closeNow, type ListenOptions, listenLocally } from './loopback-http';
import { errnoCode, LocalStoreError, privateDirectory } from './private-files';

export { errnoCode, LocalStoreError };

/** A JSON object as it arrives in a request body or leaves in a response body. */
export type JsonObject = Record<string, unknown>;

/** One operation: the parsed request body in, the response body out. It reports failures by throwing AwsJsonError. */
export type AwsJsonOperation = (body: JsonObject) => Promise<JsonObject>;

/**
 * An error reported to the caller in the AWS JSON error shape: `errorType` goes out as `__type` and as the
 * `x-amzn-ErrorType` header, which is what the SDK turns into an exception class. The message is sent as it is,
 * so it must never contain the data a service protects.
 */
export class AwsJsonError extends Error {
  constructor(
    readonly errorType: string,
    message: string,
    readonly statusCode = 400,
  ) {
    super(message);
    this.name = errorType;
  }
}

export interface AwsJsonServerOptions extends ListenOptions {
  /** The service's X-Amz-Target prefix without the dot, e.g. `TrentService` for KMS. */
  targetPrefix: string;
  /** The operations by name, as they follow the prefix in X-Amz-Target. */
  operations: ReadonlyMap<string, AwsJsonOperation>;
  /** Names the server in the log line of an unexpected failure, e.g. `kms-server`. */
  logName: string;
  /** What the caller gets for an unexpected failure (whose details are logged, never sent). */
  internalError: { errorType: string; message: string };
  /**
   * Error types whose body carries the text in `Message` rather than `message`. AWS is not uniform here: Secrets
   * Manager's modeled errors use `Message`, while KMS's errors and the framework's own (serialization, unknown
   * operation) use `message`; SDKs read either, but the casing is kept as AWS sends it.
   */
  capitalizedMessageErrorTypes?: ReadonlySet<string>;
}

/** What a local AWS server over files is started with (the KMS and Secrets Manager servers). */
export interface LocalServerOptions extends ListenOptions {
  /** Directory holding the store (each service keeps its own folder inside); share it to share the store. */
  dataDir: string;
  /** Region written into ARNs; us-east-1 by default. */
  region?: string;
  /** Account id written into ARNs; 000000000000 by default. */
  accountId?: string;
  /** Clock in epoch milliseconds, for creation dates (and recovery windows); Date.now by default. */
  now?: () => number;
}

export interface RunningAwsJsonServer {
  /** Base URL to give the SDK as `endpoint`, e.g. http://127.0.0.1:4566. */
  url: string;
  /** Stops listening and closes open connections; a store's files stay. */
  close(): Promise<void>;
}

/** Largest request body accepted; far above any valid request of the supported operations. */
const MAX_REQUEST_BYTES = 1024 * 1024;
const JSON_CONTENT_TYPES = ['application/x-amz-json-1.1', 'application/x-amz-json-1.0'];

/** Reads the body, refusing (after draining, to keep the connection usable) anything above MAX_REQUEST_BYTES. */
function readRequestBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST_BYTES) chunks.push(chunk);
    });
    request.on('end', () => {
      if (size > MAX_REQUEST_BYTES) {
        reject(new AwsJsonError('RequestEntityTooLargeException', 'Request body is too large.', 413));
      } else {
        resolve(Buffer.concat(chunks));
      }
    });
    request.on('error', reject);
  });
}

function parseRequestBody(body: Buffer): JsonObject {
  if (body.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    // The parser's own message quotes the body, which may hold a plaintext or a secret value.
    throw new AwsJsonError('SerializationException', 'The request body is not valid JSON.');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new AwsJsonError('SerializationException', 'The request body must be a JSON object.');
  }
  return parsed as JsonObject;
}

/**
 * What to log about an unexpected failure. Only messages known to be free of protected data are included: a
 * store's own errors and file-system errors (which name a file path). Anything else is logged by kind alone,
 * since for example a parser's message may quote the data it was given.
 */
function describeInternalError(error: unknown): string {
  if (error instanceof LocalStoreError) return error.message;
  const code = errnoCode(error);
  const { message, name } = (typeof error === 'object' && error !== null ? error : {}) as {
    message?: unknown;
    name?: unknown;
  };
  if (code !== undefined && typeof message === 'string') return message;
  return typeof name === 'string' ? name : typeof error;
}

function sendJson(
  response: ServerResponse,
  statusCode: number,
  payload: JsonObject,
  errorType?: string,
): void {
  const body = JSON.stringify(payload);
  response.writeHead(statusCode, {
    'Content-Type': 'application/x-amz-json-1.1',
    'Content-Length': Buffer.byteLength(body),
    'x-amzn-RequestId': randomUUID(),
    ...(errorType === undefined ? {} : { 'x-amzn-ErrorType': errorType }),
  });
  response.end(body);
}

/** Starts an AWS JSON 1.1 server that routes each request to one of `options.operations`. */
export async function startAwsJsonServer(options: AwsJsonServerOptions): Promise<RunningAwsJsonServer> {
  const targetPrefix = `${options.targetPrefix}.`;

  const sendError = (response: ServerResponse, error: AwsJsonError): void => {
    const messageMember = options.capitalizedMessageErrorTypes?.has(error.errorType) ? 'Message' : 'message';
    sendJson(
      response,
      error.statusCode,
      { __type: error.errorType, [messageMember]: error.message },
      error.errorType,
    );
  };

  const server = createServer((request, response) => {
    void (async () => {
      let operationName = 'unknown';
      try {
        // Read in full before routing, so that an oversized body is refused as such whatever its target.
        const body = await readRequestBody(request);
        const target = request.headers['x-amz-target'];
        const contentType = (request.headers['content-type'] ?? '').split(';')[0]?.trim();
        const operation =
          request.method === 'POST' &&
          typeof target === 'string' &&
          target.startsWith(targetPrefix) &&
          JSON_CONTENT_TYPES.includes(contentType ?? '')
            ? options.operations.get(target.slice(targetPrefix.length))
            : undefined;
        if (!operation) throw new AwsJsonError('UnknownOperationException', 'Unknown operation.');
        operationName = String(target);
        sendJson(response, 200, await operation(parseRequestBody(body)));
      } catch (error) {
        if (error instanceof AwsJsonError) {
          sendError(response, error);
          return;
        }
        console.error(`${options.logName}: ${operationName} failed: ${describeInternalError(error)}`);
        if (!response.headersSent) {
          const { errorType, message } = options.internalError;
          sendError(response, new AwsJsonError(errorType, message, 500));
        }
      }
    })();
  });

  return { url: await listenLocally(server, options), close: () => closeNow(server) };
}

/** What a service started by {@link startLocalAwsServer} builds its operations from. */
export interface LocalServiceContext {
  /** The service's own folder inside the data directory, mode 0700. */
  directory: string;
  /** `arn:aws:<service>:<region>:<account>:` */
  arnPrefix: string;
  accountId: string;
  now: () => number;
}

/** A local AWS service over files: how it is addressed, and its operations. */
export interface LocalServiceDefinition extends Omit<AwsJsonServerOptions, 'operations' | 'host' | 'port'> {
  /** The service's name in ARNs, e.g. `kms`. */
  arnService: string;
  /** Its folder inside the data directory, e.g. `kms`. */
  directoryName: string;
  operations(context: LocalServiceContext): ReadonlyMap<string, AwsJsonOperation>;
}

/**
 * Starts a local AWS service over the files in `options.dataDir`. Servers started over the same dataDir (in this
 * process or others) share one store, the way a fleet of Lambda instances shares one AWS account.
 */
export async function startLocalAwsServer(
  options: LocalServerOptions,
  { arnService, directoryName, operations, ...service }: LocalServiceDefinition,
): Promise<RunningAwsJsonServer> {
  const accountId = options.accountId ?? '000000000000';
  const context: LocalServiceContext = {
    directory: await privateDirectory(options.dataDir, directoryName),
    arnPrefix: `arn:aws:${arnService}:${options.region ?? 'us-east-1'}:${accountId}:`,
    accountId,
    now: options.now ?? Date.now,
  };
  return startAwsJsonServer({
    ...service,
    operations: operations(context),
    host: options.host,
    port: options.port,
  });
}
