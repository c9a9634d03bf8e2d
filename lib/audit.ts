import { createHash } from 'node:crypto';
import type { APIGatewayProxyEvent } from 'aws-lambda';

/** Who called, as API Gateway established it after IAM (SigV4) authorization. */
export interface CallerIdentity {
  userArn: string | null;
  caller: string | null;
  accountId: string | null;
  sourceIp: string | null;
  requestId: string | null;
}

/** The caller identity of an API Gateway REST proxy event, for audit log lines. */
export function callerOf(event: APIGatewayProxyEvent): CallerIdentity {
  const identity = event.requestContext?.identity;
  return {
    userArn: identity?.userArn ?? null,
    caller: identity?.caller ?? null,
    accountId: identity?.accountId ?? null,
    sourceIp: identity?.sourceIp ?? null,
    requestId: event.requestContext?.requestId ?? null,
  };
}

/**
 * A short SHA-256 fingerprint of a token, to correlate audit lines with a token a caller holds without the
 * token ever being logged (16 hex characters: enough to tell tokens apart, far too few to recover one).
 */
export function tokenFingerprint(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex').slice(0, 16);
}
