/**
 * The five figures of issue 15, each with its target and whether this run met it. Every figure is a comparison
 * made within one run (never a timed test): the token handler against a reference handler, a cache hit against a
 * bare GetItem on the same DynamoDB endpoint, the cached run against a GetItem loop of the same concurrency.
 */
import type { ColdStartResult } from './cold-start';
import type { LatencySummary } from './stats';

export interface GoalInputs {
  cold: ColdStartResult;
  /** Whether the stack starts the token function with `--enable-source-maps`. */
  deployedWithSourceMaps: boolean;
  /** C=1 against one broker: cache hits, and bare GetItem calls on the same endpoint. */
  unloaded: { hits: LatencySummary; getItem: LatencySummary; brokerCpuMsPerRequest: number; misses: number };
  /** K brokers, C clients: the cached run and the bare GetItem loop of the same concurrency. */
  loaded: {
    brokers: number;
    concurrency: number;
    throughput: number;
    getItemThroughput: number;
    brokerCpuMsPerRequest: number;
    misses: number;
    errors: number;
    entraRequests: number;
    refreshWindows: number;
  };
  /**
   * How long after a change on one instance another instance last served the token it had cached before; undefined
   * when the run did not measure it.
   */
  invalidation?: { worstMs: number; boundMs: number; changes: string[] };
}

export interface Goal {
  goal: string;
  target: string;
  measured: string;
  met: boolean;
}

const f = (v: number, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : '–');

/** The goals as rows: what was measured, the target, met or not. */
export function goalsOf(input: GoalInputs): Goal[] {
  const { cold, unloaded, loaded } = input;
  const deployed = input.deployedWithSourceMaps ? cold.tokenSourceMaps : cold.tokenPlain;
  const ratio = deployed.ms / cold.reference.ms;
  const cpuRatio = deployed.cpuMs / cold.reference.cpuMs;
  const p50Gap = unloaded.hits.p50 - unloaded.getItem.p50;
  const p99Gap = unloaded.hits.p99 - unloaded.getItem.p99;
  const worstCpu = Math.max(unloaded.brokerCpuMsPerRequest, loaded.brokerCpuMsPerRequest);
  const throughputRatio = loaded.throughput / loaded.getItemThroughput;
  const allowedEntra = Math.ceil(loaded.refreshWindows);
  const promises =
    loaded.entraRequests <= allowedEntra &&
    loaded.misses === 0 &&
    loaded.errors === 0 &&
    unloaded.misses === 0 &&
    (input.invalidation === undefined || input.invalidation.worstMs <= input.invalidation.boundMs);
  return [
    {
      goal: `1. Cold start (${cold.node}, median of ${cold.runs} fresh processes)`,
      target: 'token handler module load ≤ 0.8x the reference',
      measured:
        `${f(ratio)}x: ${f(deployed.ms, 0)} ms vs ${f(cold.reference.ms, 0)} ms ` +
        `(CPU ${f(cpuRatio)}x: ${f(deployed.cpuMs, 0)} vs ${f(cold.reference.cpuMs, 0)} ms; ` +
        `${input.deployedWithSourceMaps ? 'with' : 'without'} --enable-source-maps as deployed)`,
      met: ratio <= 0.8,
    },
    {
      goal: '2. Hit latency, C=1, K=1',
      target: 'p50 ≤ GetItem p50 + 0.5 ms; p99 ≤ GetItem p99 + 2 ms',
      measured:
        `p50 ${f(unloaded.hits.p50)} vs ${f(unloaded.getItem.p50)} ms (${p50Gap >= 0 ? '+' : ''}${f(p50Gap)}); ` +
        `p99 ${f(unloaded.hits.p99)} vs ${f(unloaded.getItem.p99)} ms (${p99Gap >= 0 ? '+' : ''}${f(p99Gap)})`,
      met: p50Gap <= 0.5 && p99Gap <= 2,
    },
    {
      goal: '3. Broker CPU per hit (process.cpuUsage() in the broker)',
      target: '≤ 1 ms',
      measured: `${f(unloaded.brokerCpuMsPerRequest, 3)} ms at C=1, K=1; ${f(loaded.brokerCpuMsPerRequest, 3)} ms at C=${loaded.concurrency}, K=${loaded.brokers}`,
      met: worstCpu <= 1,
    },
    {
      goal: `4. Throughput, K=${loaded.brokers}, C=${loaded.concurrency}`,
      target: 'cached run ≥ 0.9x the bare GetItem loop',
      measured: `${f(throughputRatio)}x: ${f(loaded.throughput, 0)} vs ${f(loaded.getItemThroughput, 0)} req/s`,
      met: throughputRatio >= 0.9,
    },
    {
      goal: '5. Cache promises',
      target:
        '≤ 1 Entra request per refresh window; no request waits for Entra (misses) in the cached runs' +
        (input.invalidation
          ? `; old token gone from every instance ≤ ${input.invalidation.boundMs} ms after a change`
          : ''),
      measured:
        `${loaded.entraRequests} Entra requests in ${f(loaded.refreshWindows, 1)} refresh windows; misses ${loaded.misses} (K=${loaded.brokers}) and ${unloaded.misses} (C=1); errors ${loaded.errors}` +
        (input.invalidation
          ? `; old token last served ${f(input.invalidation.worstMs, 0)} ms after ${input.invalidation.changes.join(', ')} (PATCH, rotation, switch-off, deletion: test/integration/memory-bound.test.ts)`
          : ''),
      met: promises,
    },
  ];
}

/** The goals as a markdown table. */
export function goalsTable(goals: Goal[]): string {
  const lines = ['| Goal | Target | Measured | Met |', '|---|---|---|---|'];
  for (const g of goals)
    lines.push(`| ${g.goal} | ${g.target} | ${g.measured} | ${g.met ? 'met' : 'not met'} |`);
  return lines.join('\n');
}
