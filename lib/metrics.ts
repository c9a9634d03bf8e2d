/**
 * What the core counts and times. functions/ adapts it to Powertools Metrics (CloudWatch EMF); tests may pass
 * a recorder. Names are CloudWatch metric names in the `TokenBroker` namespace.
 */
export interface MetricsSink {
  count(name: BrokerMetric, value?: number): void;
  milliseconds(name: 'EntraLatency', value: number): void;
}

/** Every count the core emits (the dashboard in infra/ graphs exactly these). */
export const BROKER_METRICS = [
  'CacheHit',
  'CacheMiss',
  'CacheRefresh',
  'RefreshAhead',
  'RefreshAheadFailures',
  'EntraRequests',
  'EntraFailures',
  'EntraRetries',
  'LeaseWaits',
  'LeaseWaitTimeouts',
  'CooldownRefusals',
  'StoreDegraded',
] as const;

export type BrokerMetric = (typeof BROKER_METRICS)[number];

/**
 * A gauge the scheduled refresh emits once per service with a certificate (`certificate_not_after`): whole days
 * until the certificate expires. The alarm watches its minimum over all services.
 */
export const CERTIFICATE_DAYS_TO_EXPIRY_METRIC = 'CertificateDaysToExpiry';

/** Days before `certificate_not_after` at which the certificate-expiry alarm fires. */
export const CERTIFICATE_EXPIRY_WARNING_DAYS = 30;

/** CloudWatch namespace of the broker's metrics. */
export const METRICS_NAMESPACE = 'TokenBroker';

/** A sink that drops everything. */
export const NO_METRICS: MetricsSink = { count: () => undefined, milliseconds: () => undefined };
