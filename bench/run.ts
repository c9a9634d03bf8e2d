/**
 * `npm run bench`: how rarely Entra is asked, and what a cache hit costs, under load.
 *
 * First measures the token handler's cold start against a reference handler on Node 24 (bench/cold-start.ts).
 * Then starts DynamoDB Local, the Entra emulator (in process, fixed latency, short token lifetimes with refresh_in),
 * and K broker processes in local mode (`tsx local/server.ts`) sharing the DynamoDB endpoint, the tables and the
 * Secrets Manager data dir, like K Lambda instances share one account. Then:
 * 0. cold burst: each of the C clients sends one GET at the same moment (single flight across brokers), then a
 *    short warm-up of the same load;
 * 1. unloaded: one client against one broker for BENCH_UNLOADED_SECONDS, then one caller of bare GetItem on the
 *    same endpoint for as long;
 * 2. cached run: C keep-alive clients, round-robin over the brokers, GET a token for T seconds;
 * 3. floor: the same concurrency of bare DynamoDB GetItem calls on the cached token's item;
 * 4. baseline: the same load with POST, which skips the cache and asks Entra.
 * Each broker reports its own CPU time (bench/cpu-probe.ts), so CPU per hit excludes DynamoDB Local and the load
 * generator. The five goals of issue 15 are printed with their targets (bench/goals.ts).
 * Writes bench/results/latest.md and bench/results/latency.svg. Everything listens on 127.0.0.1 only.
 *
 * Environment: BENCH_SECONDS (60), BENCH_WARMUP_SECONDS (3), BENCH_CONCURRENCY (64), BENCH_BROKERS (4), BENCH_BASELINE_SECONDS (10),
 * BENCH_FLOOR_SECONDS (10), BENCH_UNLOADED_SECONDS (10), BENCH_COLD_RUNS (11), BENCH_ENTRA_LATENCY_MS (150), BENCH_TOKEN_LIFETIME_S (90), BENCH_REFRESH_IN_S (10);
 * BENCH_KEEP_LOGS=1 keeps the brokers' logs (and the shared data dir) instead of deleting them.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { TOKEN_FUNCTION_SOURCE_MAPS } from '../infra/token-broker';
import { TOKEN_CACHE_TABLE } from '../lib/tables';
import { cacheSortKey } from '../lib/token-cache';
import { DEFAULT_MEMORY_BOUND_MS } from '../lib/token-memory';
import { ensureTables } from '../local/tables';
import { EntraEmulator } from '../test/fixtures/entra-emulator';
import { latencyChart, type MarkerKind } from './chart';
import { measureColdStart } from './cold-start';
import { goalsOf, goalsTable } from './goals';
import { staleAfterDelete } from './invalidation';
import { BrokerClient, drive, type Outcome, type RunRecord } from './load';
import { type BrokerProcess, cleanup, cpuMsOf, onCleanup, spawnBroker, waitUntilServing } from './processes';
import { type BenchConfig, coldStartTable, markdownTable, type ReportRow, rowsOf } from './report';
import { buckets, summarize } from './stats';

const ROOT = process.cwd();
const RESULTS = path.join(ROOT, 'bench', 'results');
/** Upper bound on the requests of one run, whatever its duration. */
const MAX_REQUESTS = 5_000_000;
const SERVICE = 'bench_graph';
const SCOPE = 'https://graph.microsoft.com/.default';

function intEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

function readConfig(): BenchConfig {
  const config: BenchConfig = {
    seconds: intEnv('BENCH_SECONDS', 60, 1, 3600),
    warmupSeconds: intEnv('BENCH_WARMUP_SECONDS', 3, 0, 600),
    concurrency: intEnv('BENCH_CONCURRENCY', 64, 1, 4096),
    brokers: intEnv('BENCH_BROKERS', 4, 1, 32),
    baselineSeconds: intEnv('BENCH_BASELINE_SECONDS', 10, 1, 600),
    floorSeconds: intEnv('BENCH_FLOOR_SECONDS', 10, 1, 600),
    unloadedSeconds: intEnv('BENCH_UNLOADED_SECONDS', 10, 1, 600),
    coldRuns: intEnv('BENCH_COLD_RUNS', 11, 1, 101),
    entraLatencyMs: intEnv('BENCH_ENTRA_LATENCY_MS', 150, 0, 10_000),
    tokenLifetimeS: intEnv('BENCH_TOKEN_LIFETIME_S', 90, 61, 86_400),
    refreshInS: intEnv('BENCH_REFRESH_IN_S', 10, 1, 86_400),
  };
  // The broker never serves a token in its last 60 s, so a refresh point after that would never be reached.
  if (config.refreshInS >= config.tokenLifetimeS - 60) {
    throw new Error('BENCH_REFRESH_IN_S must be below BENCH_TOKEN_LIFETIME_S - 60 (the serving margin)');
  }
  return config;
}

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

/**
 * test/fixtures/dynamodb-local.ts finds its jar through CommonJS `__dirname`, which an ES module (tsx runs this
 * package's files as ESM) does not have; a global of that name serves the same purpose without editing it.
 */
async function loadDynamoDbLocalFixture() {
  const globals = globalThis as { __dirname?: string };
  globals.__dirname ??= path.join(ROOT, 'test', 'fixtures');
  return import('../test/fixtures/dynamodb-local');
}

async function main(): Promise<void> {
  const config = readConfig();
  const loadBefore = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const totalBudgetMs =
    (config.seconds + config.baselineSeconds + config.floorSeconds + 2 * config.unloadedSeconds) * 1000 +
    config.coldRuns * 3 * 5_000 +
    240_000; // plus start and stop
  const watchdog = setTimeout(() => {
    log(`giving up after ${totalBudgetMs} ms`);
    void cleanup().then(() => process.exit(1));
  }, totalBudgetMs);
  watchdog.unref();

  const work = mkdtempSync(path.join(os.tmpdir(), 'token-broker-bench-'));
  onCleanup('work dir', async () => {
    if (process.env.BENCH_KEEP_LOGS) log(`broker logs kept in ${work}`);
    else rmSync(work, { recursive: true, force: true });
  });

  // The Lambda runtime is nodejs24.x; a number measured on another Node says so (`npm run node24 -- npm run bench`).
  log(`Node ${process.version} (${process.execPath})`);
  // Before any server starts, so that the cold-start figures share the machine with nothing of the benchmark.
  log(`cold start: token handler and reference handler, ${config.coldRuns} fresh processes each`);
  const cold = await measureColdStart(ROOT, config.coldRuns);

  log('starting DynamoDB Local');
  const { startDynamoDbLocal, freePort } = await loadDynamoDbLocalFixture();
  const ddb = await startDynamoDbLocal();
  onCleanup('DynamoDB Local', () => ddb.stop());

  const app = { tenantId: randomUUID(), clientId: randomUUID(), clientSecret: `bench-${randomUUID()}` };
  const emulator = await EntraEmulator.start({
    latencyMs: config.entraLatencyMs,
    tokenLifetimeSeconds: config.tokenLifetimeS,
    refreshInSeconds: config.refreshInS,
    apps: [{ tenantId: app.tenantId, clientId: app.clientId, clientSecrets: [app.clientSecret] }],
  });
  onCleanup('Entra emulator', () => emulator.stop());

  const suffix = randomUUID().slice(0, 8);
  const tables = { servicesTable: `bench-services-${suffix}`, tokenCacheTable: `bench-tokens-${suffix}` };
  const dynamodb = new DynamoDBClient({
    endpoint: ddb.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  onCleanup('DynamoDB client', async () => dynamodb.destroy());
  await ensureTables(dynamodb, tables);

  log(`starting ${config.brokers} brokers (logs in ${work})`);
  const dataDir = path.join(work, 'data');
  mkdirSync(dataDir, { mode: 0o700 });
  const brokers: BrokerProcess[] = [];
  for (let i = 0; i < config.brokers; i++) {
    brokers.push(
      spawnBroker(
        await freePort(),
        {
          AWS_REGION: 'us-east-1',
          AWS_ACCESS_KEY_ID: 'local',
          AWS_SECRET_ACCESS_KEY: 'local',
          AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint,
          TOKEN_BROKER_SERVICES_TABLE: tables.servicesTable,
          TOKEN_BROKER_TOKEN_CACHE_TABLE: tables.tokenCacheTable,
          TOKEN_BROKER_DATA_DIR: dataDir,
          TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: new URL(emulator.url).host,
        },
        path.join(work, `broker-${i}.log`),
      ),
    );
  }
  await Promise.all(brokers.map((b) => waitUntilServing(b)));

  const created = await fetch(`${brokers[0]?.url}/api/v2/system/service`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      name: SERVICE,
      label: 'Benchmark',
      type: 'oauth_azure_ad',
      is_active: true,
      config: {
        client_id: app.clientId,
        client_secret: app.clientSecret,
        tenant_id: app.tenantId,
        grant_type: 'client_credentials',
        is_client_credentials: true,
        scopes: SCOPE,
        authority_url: `${emulator.url}/{tenant_id}`,
      },
    }),
    signal: AbortSignal.timeout(30_000),
  });
  if (created.status !== 201) throw new Error(`creating the service answered ${created.status}`);
  const version = (created.headers.get('etag') ?? '').replace(/"/g, '');

  const clients = brokers.map(
    (b) => new BrokerClient(b.port, Math.ceil(config.concurrency / config.brokers)),
  );
  onCleanup('HTTP clients', async () => {
    for (const c of clients) c.close();
  });
  const tokenPath = `/api/v2/${SERVICE}/client_credentials`;

  // Which issued token each answer carried, as an index into the emulator's list of issued tokens (the tokens
  // themselves are only compared, never stored per request nor printed).
  const tokenIndex = new Map<string, number>();
  let indexed = 0;
  const indexOfToken = (token: unknown): number => {
    if (typeof token !== 'string') return -1;
    if (!tokenIndex.has(token)) {
      for (; indexed < emulator.issuedTokens.length; indexed++) {
        tokenIndex.set(emulator.issuedTokens[indexed] as string, indexed);
      }
    }
    return tokenIndex.get(token) ?? -1;
  };
  const overBrokers = (method: string) => async (index: number) => {
    const client = clients[index % clients.length] as BrokerClient;
    const { status, body } = await client.request(method, tokenPath);
    let tag = -1;
    if (status === 200) {
      try {
        tag = indexOfToken((JSON.parse(body) as { access_token?: unknown }).access_token);
      } catch {
        tag = -1;
      }
    }
    return { status, tag };
  };

  /** Runs a load and counts the Entra requests made during it (the emulator's own count). */
  async function measured(what: string, run: () => Promise<RunRecord>) {
    log(what);
    const before = emulator.tokenRequestCount;
    const record = await run();
    return { record, entraRequests: emulator.tokenRequestCount - before };
  }

  /**
   * A miss is a request that waited for Entra: it got a token that a foreground fetch (one made because no
   * servable token existed: the first, or one after the previous token reached the 60 s serving limit) issued
   * after the request started. Everything else was served from the cache, tokens written by a refresh-ahead
   * included. The k-th issued token is the emulator's k-th successful request, answered after its fixed latency.
   */
  function outcomesOf(record: RunRecord): Outcome[] {
    const fetches = emulator.requests.filter((r) => !r.fault).map((r) => r.at);
    const servableFor = (config.tokenLifetimeS - 60) * 1000;
    const foreground = fetches.map((at, k) => k === 0 || at >= (fetches[k - 1] as number) + servableFor);
    return record.t.map((t, i) => {
      const tag = record.tag[i] as number;
      if (record.status[i] !== 200 || tag < 0) return 'error';
      const issuedAt = (fetches[tag] ?? Number.POSITIVE_INFINITY) + config.entraLatencyMs;
      return foreground[tag] && issuedAt > record.startedAt + t ? 'miss' : 'hit';
    });
  }

  emulator.resetStats();
  const coldBurst = await measured(`cold burst: ${config.concurrency} simultaneous GETs`, () =>
    drive({
      concurrency: config.concurrency,
      seconds: 60,
      maxRequests: config.concurrency,
      call: overBrokers('GET'),
    }),
  );
  if (config.warmupSeconds > 0) {
    await measured(`warm-up: ${config.warmupSeconds} s`, () =>
      drive({
        concurrency: config.concurrency,
        seconds: config.warmupSeconds,
        maxRequests: MAX_REQUESTS,
        call: overBrokers('GET'),
      }),
    );
  }

  /** Bare GetItem calls on the cached token's item: C callers for `seconds`, over their own keep-alive sockets. */
  const getItemLoop = (concurrency: number, seconds: number) => {
    // Enough keep-alive sockets for every caller, so the loop measures DynamoDB Local, not a socket queue.
    const client = new DynamoDBClient({
      endpoint: ddb.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      requestHandler: { httpAgent: new http.Agent({ keepAlive: true, maxSockets: concurrency }) },
    });
    onCleanup('GetItem loop client', async () => client.destroy());
    const Key = {
      [TOKEN_CACHE_TABLE.partitionKey]: { S: SERVICE },
      [TOKEN_CACHE_TABLE.sortKey]: { S: cacheSortKey({ service: SERVICE, version, scope: SCOPE }) },
    };
    return drive({
      concurrency,
      seconds,
      maxRequests: MAX_REQUESTS,
      call: async () => {
        const out = await client.send(
          new GetItemCommand({ TableName: tables.tokenCacheTable, Key, ConsistentRead: true }),
        );
        return { status: out.Item ? 200 : 404, tag: 0 };
      },
    });
  };
  /** CPU the brokers used (ms, their own process.cpuUsage()) while `run` ran. */
  async function brokerCpu<T>(
    which: BrokerProcess[],
    run: () => Promise<T>,
  ): Promise<{ result: T; cpuMs: number }> {
    const before = await Promise.all(which.map((b) => cpuMsOf(b)));
    const result = await run();
    const after = await Promise.all(which.map((b) => cpuMsOf(b)));
    return { result, cpuMs: after.reduce((sum, ms, i) => sum + ms - (before[i] as number), 0) };
  }

  // Unloaded: one client against one broker (the others idle), then one bare GetItem caller, as long each.
  const unloadedFrom = emulator.requests.length;
  const unloadedHits = await brokerCpu([brokers[0] as BrokerProcess], () =>
    measured(`unloaded: GET, 1 client, 1 broker, ${config.unloadedSeconds} s`, () =>
      drive({
        concurrency: 1,
        seconds: config.unloadedSeconds,
        maxRequests: MAX_REQUESTS,
        call: overBrokers('GET'),
      }),
    ),
  );
  const unloadedGetItem = await measured(
    `unloaded: bare GetItem, 1 caller, ${config.unloadedSeconds} s`,
    () => getItemLoop(1, config.unloadedSeconds),
  );

  const cachedEntraFrom = emulator.requests.length;
  const cachedRun = await brokerCpu(brokers, () =>
    measured(`cached run: GET, ${config.concurrency} clients, ${config.seconds} s`, () =>
      drive({
        concurrency: config.concurrency,
        seconds: config.seconds,
        maxRequests: MAX_REQUESTS,
        call: overBrokers('GET'),
      }),
    ),
  );
  const cached = cachedRun.result;
  const unloadedOutcomes = outcomesOf(unloadedHits.result.record);
  const cachedOutcomes = outcomesOf(cached.record);
  const coldOutcomes = outcomesOf(coldBurst.record);
  const entraTimes = emulator.requests.map((r) => r.at);
  if (emulator.issuedTokens.length < emulator.requests.length - Math.min(cachedEntraFrom, unloadedFrom)) {
    log('warning: more tokens were issued than the emulator keeps; hits and misses cannot be told apart');
  }
  const floor = await measured(
    `floor: bare GetItem, ${config.concurrency} callers, ${config.floorSeconds} s`,
    () => getItemLoop(config.concurrency, config.floorSeconds),
  );

  const baseline = await measured(
    `baseline: POST (cache bypassed), ${config.concurrency} clients, ${config.baselineSeconds} s`,
    () =>
      drive({
        concurrency: config.concurrency,
        seconds: config.baselineSeconds,
        maxRequests: MAX_REQUESTS,
        call: overBrokers('POST'),
      }),
  );

  log(
    'invalidation: DELETE of the cached tokens on one broker, every broker asked until it serves another token',
  );
  const staleMs = await staleAfterDelete(clients, tokenPath);

  // Report.
  const rows: ReportRow[] = [
    ...rowsOf(
      'Unloaded GET (C=1, K=1)',
      unloadedHits.result.record,
      unloadedOutcomes,
      unloadedHits.result.entraRequests,
      false,
    ),
    ...rowsOf(
      'Unloaded bare GetItem (C=1)',
      unloadedGetItem.record,
      unloadedGetItem.record.status.map((st) => (st === 200 ? 'hit' : 'error')),
      undefined,
      false,
    ),
    ...rowsOf(`Cached GET (K=${config.brokers})`, cached.record, cachedOutcomes, cached.entraRequests, true),
    ...rowsOf(
      'Baseline POST (cache bypassed)',
      baseline.record,
      baseline.record.status.map((st) => (st === 200 ? 'hit' : 'error')),
      baseline.entraRequests,
      false,
    ),
    ...rowsOf(
      'Bare DynamoDB GetItem (floor)',
      floor.record,
      floor.record.status.map((st) => (st === 200 ? 'hit' : 'error')),
      undefined,
      false,
    ),
  ];
  const table = markdownTable(rows, config);
  const cachedS = cached.record.durationMs / 1000;
  const unloadedRequests = unloadedHits.result.record.t.length;
  const goals = goalsTable(
    goalsOf({
      cold,
      deployedWithSourceMaps: TOKEN_FUNCTION_SOURCE_MAPS,
      unloaded: {
        hits: summarize(unloadedHits.result.record.latencyMs),
        getItem: summarize(unloadedGetItem.record.latencyMs),
        brokerCpuMsPerRequest: unloadedHits.cpuMs / Math.max(1, unloadedRequests),
        misses: unloadedOutcomes.filter((o) => o === 'miss').length,
      },
      loaded: {
        brokers: config.brokers,
        concurrency: config.concurrency,
        throughput: cached.record.t.length / cachedS,
        getItemThroughput: floor.record.t.length / (floor.record.durationMs / 1000),
        brokerCpuMsPerRequest: cachedRun.cpuMs / Math.max(1, cached.record.t.length),
        misses: cachedOutcomes.filter((o) => o === 'miss').length,
        errors: cachedOutcomes.filter((o) => o === 'error').length,
        entraRequests: cached.entraRequests,
        refreshWindows: cachedS / config.refreshInS,
      },
      invalidation: {
        worstMs: staleMs,
        boundMs: DEFAULT_MEMORY_BOUND_MS,
        changes: [`a DELETE of the cached tokens on 1 of ${config.brokers} brokers`],
      },
    }),
  );
  const summary = [
    `- Entra requests in the cached run: **${cached.entraRequests}**; the token was already cached (cold burst and warm-up), so one refresh per refresh window would be ${(cachedS / config.refreshInS).toFixed(1)}.`,
    `- Cold burst before the run: ${config.concurrency} simultaneous GETs over ${config.brokers} brokers → **${coldBurst.entraRequests}** Entra request(s), ${coldOutcomes.filter((o) => o === 'miss').length} misses, ${coldOutcomes.filter((o) => o === 'error').length} errors, p99 ${summarize(coldBurst.record.latencyMs).p99.toFixed(0)} ms.`,
    '- A miss waited for Entra: it got a token that Entra issued after the request started, from a fetch made because no servable token existed. Requests answered with a token written by a refresh-ahead count as hits. Entra counts are the emulator’s own.',
    `- Entra requests per token lifetime is lifetime ÷ refresh_in (${(config.tokenLifetimeS / config.refreshInS).toFixed(1)}) when every refresh window costs exactly one request: the refresh point, not the lifetime, sets the rate; the per-refresh-window column is the one to compare with the target of 1.`,
    '- The baseline POSTs skip the cache: every one asks Entra unless another request for the same key is in flight (in-process single flight and the cross-instance lease still apply).',
  ].join('\n');
  const header = [
    '# Token Broker benchmark',
    '',
    `${new Date().toISOString()} · load average before the run ${loadBefore} · K=${config.brokers} broker processes (local mode), C=${config.concurrency} keep-alive clients (closed loop, round-robin), cached run ${config.seconds} s, baseline ${config.baselineSeconds} s, floor ${config.floorSeconds} s · DynamoDB Local · Entra emulator: latency ${config.entraLatencyMs} ms, token lifetime ${config.tokenLifetimeS} s, refresh_in ${config.refreshInS} s · ${os.cpus().length} CPUs, Node ${process.version}, everything on one host.`,
    '',
  ].join('\n');
  const coldTable = coldStartTable(cold);
  const markdown = `${header}\n## Goals (issue 15)\n\n${goals}\n\n## Cold start\n\n${coldTable}\n\n## Runs\n\n${table}\n\n${summary}\n\n![latency over time](latency.svg)\n`;

  const bucketS = Math.max(0.25, cachedS / 120);
  const markers: Array<{ atS: number; kind: MarkerKind }> = [];
  for (const at of entraTimes) {
    const s = (at - cached.record.startedAt) / 1000;
    markers.push(
      { atS: s, kind: 'entra' },
      { atS: s + config.refreshInS, kind: 'refresh-due' },
      { atS: s + config.tokenLifetimeS - 60, kind: 'serve-limit' },
      { atS: s + config.tokenLifetimeS, kind: 'expiry' },
    );
  }
  const points = [];
  for (let i = 0; i < cached.record.t.length; i++) {
    const outcome = cachedOutcomes[i];
    if (outcome === 'hit') continue;
    points.push({
      atS: (cached.record.t[i] as number) / 1000,
      latencyMs: cached.record.latencyMs[i] as number,
      error: outcome === 'error',
    });
  }
  const svg = latencyChart({
    title: `Cached GET latency over time (K=${config.brokers}, C=${config.concurrency})`,
    subtitle: `${bucketS.toFixed(2)} s intervals; Entra latency ${config.entraLatencyMs} ms, token lifetime ${config.tokenLifetimeS} s, refresh_in ${config.refreshInS} s; ${cached.entraRequests} Entra requests`,
    runS: cachedS,
    buckets: buckets(cached.record.t, cached.record.latencyMs, bucketS, cachedS),
    points,
    markers,
    floorP99Ms: summarize(floor.record.latencyMs).p99,
  });

  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(path.join(RESULTS, 'latest.md'), markdown);
  writeFileSync(path.join(RESULTS, 'latency.svg'), svg);
  process.stdout.write(
    `\n${goals}\n\n${coldTable}\n\n${table}\n\n${summary}\n\nWritten: bench/results/latest.md, bench/results/latency.svg\n`,
  );
}

let exiting = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (exiting) return;
    exiting = true;
    log(`${signal}: stopping everything`);
    void cleanup().then(() => process.exit(130));
  });
}

main()
  .then(() => cleanup())
  .then(() => process.exit(0))
  .catch(async (error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    await cleanup();
    process.exit(1);
  });
