/** The benchmark's markdown report. */
import type { ColdStartResult } from './cold-start';
import type { Outcome, RunRecord } from './load';
import { type LatencySummary, summarize } from './stats';

export interface BenchConfig {
  seconds: number;
  warmupSeconds: number;
  concurrency: number;
  brokers: number;
  baselineSeconds: number;
  floorSeconds: number;
  unloadedSeconds: number;
  coldRuns: number;
  entraLatencyMs: number;
  tokenLifetimeS: number;
  refreshInS: number;
}

/** One row of the table. */
export interface ReportRow {
  run: string;
  requests: number;
  errors: number;
  /** Entra requests during the run (the emulator's own count); undefined where Entra is not involved. */
  entraRequests?: number;
  seconds: number;
  latency: LatencySummary;
  /** Requests in this row per second of the run. */
  throughput: number;
}

/** Rows for a run: all requests, and with `split` its hits and misses separately. */
export function rowsOf(
  name: string,
  run: RunRecord,
  outcomes: readonly Outcome[],
  entraRequests: number | undefined,
  split: boolean,
): ReportRow[] {
  const seconds = run.durationMs / 1000;
  const pick = (want?: 'hit' | 'miss'): ReportRow => {
    const latencies: number[] = [];
    let errors = 0;
    let requests = 0;
    for (let i = 0; i < run.t.length; i++) {
      const outcome = outcomes[i];
      if (want && outcome !== want) continue;
      requests++;
      if (outcome === 'error') errors++;
      latencies.push(run.latencyMs[i] as number);
    }
    return {
      run: want ? `${name}: ${want === 'hit' ? 'hits' : 'misses'}` : name,
      requests,
      errors,
      entraRequests: want ? undefined : entraRequests,
      seconds,
      latency: summarize(latencies),
      throughput: requests / seconds,
    };
  };
  return split ? [pick(), pick('hit'), pick('miss')] : [pick()];
}

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '–');

/** The markdown table (and the per-lifetime and per-refresh-window ratios of Entra requests). */
export function markdownTable(rows: ReportRow[], config: BenchConfig): string {
  const lines = [
    '| Run | Requests | Errors | Entra requests | Entra req. per token lifetime | Entra req. per refresh window | Throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const entra = r.entraRequests;
    const perLifetime = entra === undefined ? '' : (entra / (r.seconds / config.tokenLifetimeS)).toFixed(2);
    const perWindow =
      entra === undefined ? '' : (entra / Math.max(1, r.seconds / config.refreshInS)).toFixed(2);
    lines.push(
      `| ${r.run} | ${r.requests} | ${r.errors} | ${entra ?? ''} | ${perLifetime} | ${perWindow} | ${r.throughput.toFixed(0)} | ${ms(r.latency.p50)} | ${ms(r.latency.p95)} | ${ms(r.latency.p99)} | ${ms(r.latency.max)} |`,
    );
  }
  return lines.join('\n');
}

/** The cold-start measurements: bundle size and median module load of each variant. */
export function coldStartTable(cold: ColdStartResult): string {
  const lines = [
    `Module load (require + construction) in fresh ${cold.node} processes, median of ${cold.runs}:`,
    '',
    '| Bundle | Bytes | Load (ms) | Load CPU (ms) | vs reference |',
    '|---|---:|---:|---:|---:|',
  ];
  for (const v of [cold.reference, cold.tokenSourceMaps, cold.tokenPlain]) {
    lines.push(
      `| ${v.name} | ${v.bytes.toLocaleString('en')} | ${v.ms.toFixed(0)} | ${v.cpuMs.toFixed(0)} | ${(v.ms / cold.reference.ms).toFixed(2)}x |`,
    );
  }
  return lines.join('\n');
}
