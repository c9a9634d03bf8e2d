/** Latency statistics of the benchmark: percentiles and per-interval summaries. */

/** Nearest-rank percentile of an ascending list; NaN for an empty one. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

/** p50, p95, p99 and max of some latencies (ms). */
export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function summarize(latencies: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(latencies).sort();
  const list = Array.from(sorted);
  return {
    count: list.length,
    p50: percentile(list, 50),
    p95: percentile(list, 95),
    p99: percentile(list, 99),
    max: list.length ? (list[list.length - 1] as number) : Number.NaN,
  };
}

/** One interval of a run: when it starts (s since the run began) and its latency summary. */
export interface Bucket {
  startS: number;
  summary: LatencySummary;
}

/** Groups samples (time in ms since the run began, latency in ms) into intervals of `bucketS` seconds. */
export function buckets(
  times: readonly number[],
  latencies: readonly number[],
  bucketS: number,
  runS: number,
): Bucket[] {
  const count = Math.max(1, Math.ceil(runS / bucketS));
  const groups: number[][] = Array.from({ length: count }, () => []);
  for (let i = 0; i < times.length; i++) {
    const index = Math.min(count - 1, Math.floor((times[i] as number) / 1000 / bucketS));
    if (index >= 0) groups[index]?.push(latencies[i] as number);
  }
  return groups.map((g, i) => ({ startS: i * bucketS, summary: summarize(g) }));
}
