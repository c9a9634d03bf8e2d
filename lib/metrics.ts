/**
 * What the core counts and times. functions/ adapts it to Powertools Metrics (CloudWatch EMF); tests may pass
 * a recorder. Names are CloudWatch metric names in the `TokenBroker` namespace.
 */
export interface MetricsSink {
  count(name: BrokerMetric, value?: number): void;
  milliseconds(name: 'EntraLatency', value: number): void;
}

export type BrokerMetric =
  | 'CacheHit'
  | 'CacheMiss'
  | 'CacheRefresh'
  | 'RefreshAhead'
  | 'RefreshAheadFailures'
  | 'EntraRequests'
  | 'EntraFailures'
  | 'EntraRetries'
  | 'LeaseWaits'
  | 'LeaseWaitTimeouts'
  | 'CooldownRefusals'
  | 'StoreDegraded';

/** A sink that drops everything. */
export const NO_METRICS: MetricsSink = { count: () => undefined, milliseconds: () => undefined };
