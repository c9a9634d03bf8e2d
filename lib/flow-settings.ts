/** Tunables of the flow; every one has a production default. */
export interface FlowSettings {
  /** Fraction of a token's lifetime after which it is refreshed ahead (when Entra sends no refresh_in). */
  refreshFraction: number;
  /** How long a refresh lease holds before another instance may take it over. */
  leaseTtlMs: number;
  /**
   * What a request that waits for another instance's refresh may spend on top of the retry budget, waiting and
   * then (if that instance gave up without a token) asking Entra itself. Waiters follow the holder's lease: they
   * stop early only when it is released or expired; at this limit the caller gets 503 rather than a second
   * Entra request. The token function's timeout is this plus the retry budget plus its AWS calls (infra/).
   */
  leaseWaitMs: number;
  /** Poll interval while waiting for another instance's refresh. */
  leasePollMs: number;
  /** Total time one token request may spend on Entra, retries and Retry-After waits included. */
  retryBudgetMs: number;
  /** After Entra refuses a service (4xx error), callers get the refusal for this long without asking Entra. */
  cooldownMs: number;
  /** How long a client secret read from Secrets Manager is reused in this process. */
  secretCacheTtlMs: number;
  /** A token's `last_used_at` is updated on a hit when older than this (bounds the writes hits cause). */
  touchIntervalMs: number;
}

export const DEFAULT_FLOW_SETTINGS: FlowSettings = {
  refreshFraction: 0.5,
  leaseTtlMs: 15_000,
  leaseWaitMs: 5_000,
  leasePollMs: 100,
  retryBudgetMs: 12_000,
  cooldownMs: 30_000,
  secretCacheTtlMs: 5 * 60_000,
  touchIntervalMs: 5 * 60_000,
};
