import { randomUUID } from 'node:crypto';
import type { KmsSigningOperations } from '../lib/credentials/kms-signing-keys';
import type { WebIdentityTokenOperations } from '../lib/credentials/sts-web-identity';
import type { DynamoDbOperations } from '../lib/dynamodb';
import type { SecretsManagerOperations } from '../lib/secret-store';
import type { KmsDataKeys } from '../lib/token-encryption';
import {
  type AwsCredentials,
  AwsJsonClient,
  type AwsJsonService,
  DYNAMODB_SERVICE,
  KMS_SERVICE,
  SECRETS_MANAGER_SERVICE,
  STS_SERVICE,
} from './aws-json';

/**
 * How long one AWS call may take, so that no call waits forever on an endpoint that accepts connections and never
 * answers. The broker's own clients ({@link createAwsClients}, functions/aws-json.ts) enforce each limit; SDK
 * clients built with {@link awsClientOptions} too (in the pinned `@smithy/node-http-handler`, `requestTimeout`
 * alone only logs a warning, and aborts the request only together with `throwOnRequestTimeout: true`).
 */
export interface AwsCallLimits {
  /** Time to establish the TCP (and TLS) connection. */
  connectionTimeoutMs: number;
  /** Time from sending the request to the response headers. */
  requestTimeoutMs: number;
  /** Longest silence on the socket while the response body arrives. */
  socketTimeoutMs: number;
  /** Attempts in all (timeouts, network failures, throttling and 5xx are retried with backoff). */
  maxAttempts: number;
}

/**
 * Limits per service. DynamoDB, Secrets Manager and KMS answer in milliseconds; two seconds without response
 * headers means trouble, and the flow degrades to memory. Worst case of one call: maxAttempts × (connection +
 * request) plus the backoff (< 1 s), about 5 s. The request's own budget (functions/request-budget.ts)
 * bounds the sum of all calls of one request.
 */
export const AWS_CALL_LIMITS = {
  dynamodb: { connectionTimeoutMs: 1000, requestTimeoutMs: 2000, socketTimeoutMs: 2000, maxAttempts: 2 },
  secretsManager: {
    connectionTimeoutMs: 1000,
    requestTimeoutMs: 2000,
    socketTimeoutMs: 2000,
    maxAttempts: 2,
  },
  kms: { connectionTimeoutMs: 1000, requestTimeoutMs: 2000, socketTimeoutMs: 2000, maxAttempts: 2 },
  sts: { connectionTimeoutMs: 1000, requestTimeoutMs: 2000, socketTimeoutMs: 2000, maxAttempts: 2 },
} as const satisfies Record<string, AwsCallLimits>;

/**
 * The options an AWS SDK client is built with where the broker still uses the SDK (local mode's setup of its key
 * and tables, local/server.ts): bounded connection, request and retries, like {@link createAwsClients}.
 */
export function awsClientOptions(limits: AwsCallLimits) {
  return {
    maxAttempts: limits.maxAttempts,
    requestHandler: {
      connectionTimeout: limits.connectionTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      socketTimeout: limits.socketTimeoutMs,
      throwOnRequestTimeout: true,
    },
  };
}

/** The broker's AWS clients: the ports lib/ defines, on the JSON-protocol client of functions/aws-json.ts. */
export interface AwsClients {
  dynamodb: DynamoDbOperations;
  secretsManager: SecretsManagerOperations;
  kms: KmsDataKeys;
  /** The asymmetric keys of kms_certificate services (same KMS client). */
  kmsSigning: KmsSigningOperations;
  /** For federated credentials (`AWS_ENDPOINT_URL_STS` in local mode; the regional endpoint GetWebIdentityToken needs). */
  sts: WebIdentityTokenOperations;
  /** Closes their kept-alive connections. */
  destroy(): void;
}

/** Where and as whom the clients call; by default the environment (Lambda, local mode). */
export interface AwsClientSettings {
  /** One endpoint for every service (tests: a local server); default: `AWS_ENDPOINT_URL_<SERVICE>` or AWS. */
  endpoint?: string;
  region?: string;
  credentials?: AwsCredentials;
  /** Per-service limits; default {@link AWS_CALL_LIMITS}. */
  limits?: Partial<Record<keyof typeof AWS_CALL_LIMITS, AwsCallLimits>>;
}

const bytes = (base64: string | undefined): Uint8Array | undefined =>
  base64 === undefined ? undefined : Buffer.from(base64, 'base64');
const base64 = (value: Uint8Array | undefined): string | undefined =>
  value === undefined ? undefined : Buffer.from(value).toString('base64');

/** The DynamoDB port of lib/dynamodb.ts on a JSON-protocol client: each operation is one call of its name. */
function dynamoDbOperations(client: AwsJsonClient): DynamoDbOperations {
  return {
    getItem: (input, options) => client.call('GetItem', input, options),
    putItem: (input, options) => client.call('PutItem', input, options),
    updateItem: (input, options) => client.call('UpdateItem', input, options),
    deleteItem: (input, options) => client.call('DeleteItem', input, options),
    query: (input, options) => client.call('Query', input, options),
    scan: (input, options) => client.call('Scan', input, options),
    batchWriteItem: (input, options) => client.call('BatchWriteItem', input, options),
  };
}

/** The KMS port of lib/token-encryption.ts: blobs travel base64 in the JSON protocol, bytes in lib. */
function kmsDataKeys(client: AwsJsonClient): KmsDataKeys {
  return {
    generateDataKey: async (input, options) => {
      const out = await client.call<{ Plaintext?: string; CiphertextBlob?: string }>(
        'GenerateDataKey',
        input,
        options,
      );
      return { Plaintext: bytes(out.Plaintext), CiphertextBlob: bytes(out.CiphertextBlob) };
    },
    decrypt: async (input, options) => {
      const out = await client.call<{ Plaintext?: string }>(
        'Decrypt',
        { ...input, CiphertextBlob: base64(input.CiphertextBlob) },
        options,
      );
      return { Plaintext: bytes(out.Plaintext) };
    },
  };
}

/** The KMS port of lib/credentials/kms-signing-keys.ts: blobs base64 in the JSON protocol, bytes in lib. */
function kmsSigningOperations(client: AwsJsonClient): KmsSigningOperations {
  return {
    // No client token: a retry after a lost answer would create a second key, so one attempt (unless throttled).
    createKey: (input) => client.call('CreateKey', input, { idempotent: false }),
    describeKey: (input) => client.call('DescribeKey', input),
    scheduleKeyDeletion: (input) => client.call('ScheduleKeyDeletion', input),
    getPublicKey: async (input) => {
      const out = await client.call<{ PublicKey?: string; KeyUsage?: string }>('GetPublicKey', input);
      return { PublicKey: bytes(out.PublicKey), KeyUsage: out.KeyUsage };
    },
    sign: async (input) => {
      const out = await client.call<{ Signature?: string }>('Sign', {
        ...input,
        Message: base64(input.Message),
      });
      return { Signature: bytes(out.Signature) };
    },
  };
}

/** The STS port of lib/credentials/sts-web-identity.ts (AWS Query protocol: members come back as strings). */
function stsOperations(client: AwsJsonClient): WebIdentityTokenOperations {
  return {
    getWebIdentityToken: (input, options) => client.call('GetWebIdentityToken', input, options),
  };
}

/**
 * The Secrets Manager port of lib/secret-store.ts. CreateSecret gets a `ClientRequestToken` unless given (the SDK
 * fills in this idempotency token the same way), so that a retried attempt cannot create a second version.
 */
function secretsManagerOperations(client: AwsJsonClient): SecretsManagerOperations {
  return {
    createSecret: (input, options) =>
      client.call('CreateSecret', { ClientRequestToken: randomUUID(), ...input }, options),
    getSecretValue: (input, options) => client.call('GetSecretValue', input, options),
    describeSecret: (input, options) => client.call('DescribeSecret', input, options),
    deleteSecret: (input, options) => client.call('DeleteSecret', input, options),
  };
}

/** Builds every AWS client the broker uses, each with its {@link AWS_CALL_LIMITS}. */
export function createAwsClients(settings: AwsClientSettings = {}): AwsClients {
  const client = (service: AwsJsonService, limits: AwsCallLimits) =>
    new AwsJsonClient({
      service,
      limits,
      endpoint: settings.endpoint,
      region: settings.region,
      credentials: settings.credentials,
    });
  const limits = { ...AWS_CALL_LIMITS, ...settings.limits };
  const dynamodb = client(DYNAMODB_SERVICE, limits.dynamodb);
  const secretsManager = client(SECRETS_MANAGER_SERVICE, limits.secretsManager);
  const kms = client(KMS_SERVICE, limits.kms);
  const sts = client(STS_SERVICE, limits.sts);
  return {
    dynamodb: dynamoDbOperations(dynamodb),
    secretsManager: secretsManagerOperations(secretsManager),
    kms: kmsDataKeys(kms),
    kmsSigning: kmsSigningOperations(kms),
    sts: stsOperations(sts),
    destroy: () => {
      for (const c of [dynamodb, secretsManager, kms, sts]) c.destroy();
    },
  };
}
