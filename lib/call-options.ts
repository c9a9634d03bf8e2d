/**
 * Options every store adapter call accepts. `signal` is the request's time budget: the handler derives it from
 * the Lambda context (functions/request-budget.ts) and lib passes it on to each AWS call (the ports of
 * lib/dynamodb.ts, secret-store.ts, token-encryption.ts take these options), so that no call outlives the
 * request. lib never reads the Lambda context itself.
 */
export interface CallOptions {
  /** Aborts the call when the request's budget runs out; the call then fails with a StoreTimeoutError. */
  signal?: AbortSignal;
  /**
   * When the request's budget runs out (epoch ms, on the clock of the component's injected `now`), for decisions
   * made before a call: whether one more step still fits.
   */
  deadline?: number;
}

/** An AWS answer as the store ports return it: the service's own fields, without the SDK's response metadata. */
export type AwsAnswer<T> = Omit<T, '$metadata'>;
