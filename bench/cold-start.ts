/**
 * Goal 1 of the benchmark: the token handler's cold start against a reference handler (bench/reference-handler.ts),
 * both bundled as the stack bundles its functions (infra/token-broker/functions.ts lambdaBundling(): LAMBDA_BUNDLING,
 * and for a broker without an HTTPS proxy, the default, its externals) and loaded in fresh
 * processes of the Lambda runtime's Node major. Module load is `require` plus everything the module builds at load
 * (clients, loggers, the runtime), wall time, median over the runs; the variants are interleaved so that a change
 * in the machine's load hits them alike.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { lambdaBundling } from '../infra/token-broker/functions';
import { node24Binary } from './node24';

/** The environment the token handler validates at cold start; nothing is contacted while loading. */
const HANDLER_ENV = {
  TOKEN_BROKER_SERVICES_TABLE: 'services',
  TOKEN_BROKER_TOKEN_KEY_ID: 'alias/token-broker-local',
  TOKEN_BROKER_TOKEN_CACHE_TABLE: 'tokens',
  TOKEN_BROKER_SECRET_PREFIX: 'token-broker/bench/services/',
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'local',
  AWS_SECRET_ACCESS_KEY: 'local',
  POWERTOOLS_LOG_LEVEL: 'ERROR',
  AWS_SDK_JS_SUPPRESS_NODE_VERSION_WARNING: '1',
};

/** One loaded bundle: wall and CPU time of `require` (ms). */
interface Load {
  ms: number;
  cpuMs: number;
}

export interface ColdStartVariant {
  name: string;
  bytes: number;
  /** Median wall time of the module load (ms). */
  ms: number;
  /** Median CPU time of the module load (ms). */
  cpuMs: number;
}

export interface ColdStartResult {
  node: string;
  runs: number;
  reference: ColdStartVariant;
  /** The token handler with `--enable-source-maps`. */
  tokenSourceMaps: ColdStartVariant;
  /** The token handler without it. */
  tokenPlain: ColdStartVariant;
}

const LOAD_SCRIPT =
  "const {performance}=require('node:perf_hooks');const c=process.cpuUsage();const t=performance.now();" +
  'require(process.argv[1]);const ms=performance.now()-t;const u=process.cpuUsage(c);' +
  'console.log(JSON.stringify({ms,cpuMs:(u.user+u.system)/1000}))';

function loadOnce(node: string, file: string, flags: string[]): Load {
  const child = spawnSync(node, [...flags, '-e', LOAD_SCRIPT, file], {
    env: { ...process.env, ...HANDLER_ENV, NODE_OPTIONS: '' },
    encoding: 'utf8',
  });
  if (child.status !== 0) throw new Error(`loading ${file} failed: ${child.stderr}`);
  return JSON.parse(child.stdout.trim().split('\n').pop() as string) as Load;
}

/** The bundling of the default stack (no HTTPS proxy). */
const BUNDLING = lambdaBundling(undefined);

async function bundle(root: string, entry: string, outfile: string): Promise<number> {
  await build({
    entryPoints: [path.join(root, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: BUNDLING.target,
    minify: BUNDLING.minify,
    sourcemap: BUNDLING.sourceMap,
    sourcesContent: BUNDLING.sourcesContent,
    external: [...(BUNDLING.externalModules ?? [])],
    logLevel: 'error',
  });
  return statSync(outfile).size;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

/** Bundles both handlers and loads each `runs` times in fresh Node 24 processes. */
export async function measureColdStart(root: string, runs: number): Promise<ColdStartResult> {
  const node = node24Binary(root);
  const out = path.join(root, 'node_modules', '.cache', 'token-broker-bench');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const tokenFile = path.join(out, 'token', 'index.js');
  const referenceFile = path.join(out, 'reference', 'index.js');
  const tokenBytes = await bundle(root, 'functions/token.ts', tokenFile);
  const referenceBytes = await bundle(root, 'bench/reference-handler.ts', referenceFile);
  const variants = [
    { name: 'reference: middy + DynamoDB + lib-dynamodb + Secrets Manager', file: referenceFile, flags: [] },
    { name: 'token handler, --enable-source-maps', file: tokenFile, flags: ['--enable-source-maps'] },
    { name: 'token handler, no source maps', file: tokenFile, flags: [] },
  ];
  const loads = variants.map(() => [] as Load[]);
  // One unmeasured load each first, so the file cache is warm for all alike.
  for (const v of variants) loadOnce(node, v.file, v.flags);
  for (let run = 0; run < runs; run++) {
    for (const [i, v] of variants.entries()) loads[i]?.push(loadOnce(node, v.file, v.flags));
  }
  const summary = (i: number, bytes: number): ColdStartVariant => ({
    name: variants[i]?.name as string,
    bytes,
    ms: median((loads[i] ?? []).map((l) => l.ms)),
    cpuMs: median((loads[i] ?? []).map((l) => l.cpuMs)),
  });
  const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
  rmSync(out, { recursive: true, force: true });
  return {
    node: version,
    runs,
    reference: summary(0, referenceBytes),
    tokenSourceMaps: summary(1, tokenBytes),
    tokenPlain: summary(2, tokenBytes),
  };
}
