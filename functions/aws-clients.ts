import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

/**
 * How long one AWS call may take. Every AWS SDK client of the broker is built from {@link awsClientOptions}, so
 * that no call waits forever on an endpoint that accepts connections and never answers: in the pinned
 * `@smithy/node-http-handler`, `requestTimeout` alone only logs a warning, and aborts the request only together
 * with `throwOnRequestTimeout: true`.
 */
export interface AwsCallLimits {
  /** Time to establish the TCP (and TLS) connection. */
  connectionTimeoutMs: number;
  /** Time from sending the request to the response headers. */
  requestTimeoutMs: number;
  /** Longest silence on the socket while the response body arrives. */
  socketTimeoutMs: number;
  /** Attempts in all (the SDK retries timeouts, throttling and 5xx with backoff). */
  maxAttempts: number;
}

/**
 * Limits per service. DynamoDB, Secrets Manager and KMS answer in milliseconds; two seconds without response
 * headers means trouble, and the flow degrades to memory. Worst case of one call: maxAttempts × (connection +
 * request) plus the SDK's backoff (< 1 s), about 5 s. The request's own budget (functions/request-budget.ts)
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

/** The options every AWS SDK client of the broker is built with: bounded connection, request and retries. */
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

/** The broker's AWS clients. Endpoints come from `AWS_ENDPOINT_URL_<SERVICE>` (local mode, tests) or AWS. */
export interface AwsClients {
  dynamodb: DynamoDBClient;
  secretsManager: SecretsManagerClient;
  kms: KMSClient;
}

/** Builds every AWS client the broker uses, each with its {@link AWS_CALL_LIMITS}. */
export function createAwsClients(): AwsClients {
  return {
    dynamodb: new DynamoDBClient(awsClientOptions(AWS_CALL_LIMITS.dynamodb)),
    secretsManager: new SecretsManagerClient(awsClientOptions(AWS_CALL_LIMITS.secretsManager)),
    kms: new KMSClient(awsClientOptions(AWS_CALL_LIMITS.kms)),
  };
}

/**
 * The STS client for federated credentials, loaded on first use (only federated services need it), with the same
 * bounded options. The SDK reads `AWS_ENDPOINT_URL_STS` (local mode); GetWebIdentityToken needs a regional
 * endpoint, which SDK v3 uses by default.
 */
export async function createStsClient() {
  const { STSClient } = await import('@aws-sdk/client-sts');
  return new STSClient(awsClientOptions(AWS_CALL_LIMITS.sts));
}
