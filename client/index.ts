/**
 * Token Broker's TypeScript client: SigV4-signed calls to the broker's API with an in-memory token cache, single
 * flight per token and retries within a budget. Kept out of the Lambda bundles (nothing in functions/ imports it).
 */
export * from './errors';
export {
  type BrokerToken,
  type ServiceView,
  TokenBrokerClient,
  type TokenBrokerClientOptions,
  type TokenRequestOptions,
  type VersionedService,
} from './token-broker-client';
export type { Clock, RetryNotice, RetryOptions } from './transport';
