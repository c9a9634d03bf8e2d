/**
 * Measures the numbers behind two deployment choices (`npx tsx infra/measure-bundles.ts [runs]`):
 *
 * 1. Bundle the AWS SDK or use the runtime's: builds the token handler as NodejsFunction does
 *    (LAMBDA_BUNDLING), once with the SDK bundled and once with `@aws-sdk/*` and `@smithy/*` external (what
 *    NodejsFunction does by default, leaving them to the runtime), and loads each in fresh Node processes.
 *    The external variant resolves the SDK from node_modules here, as the runtime resolves its own copy.
 * 2. Memory of the token function: runs the bundled handler in a fresh process against dynalite, the local
 *    Secrets Manager and the Entra emulator (one miss, then cache hits) and reports its CPU time and RSS.
 *    Lambda allots CPU in proportion to memory (one vCPU at 1,769 MB), so CPU-bound time scales by 1769/MB.
 *
 * Plain `node` runs the children, so no TypeScript loader sits in what is measured.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { build, type Metafile } from 'esbuild';
import { startSecretsManagerServer } from '../local/secrets-manager-server';
import { EntraEmulator } from '../test/fixtures/entra-emulator';
import { LAMBDA_BUNDLING } from './token-broker';
import { PROXY_ONLY_MODULES } from './token-broker/functions';

const ROOT = path.resolve(import.meta.dirname, '..');
// Inside the project, so the external variant finds the SDK in node_modules as the runtime finds its own.
const OUT = path.join(ROOT, 'node_modules', '.cache', 'token-broker-measure');
const RUNS = Number(process.argv[2] ?? 15);

interface Variant {
  name: string;
  external: string[];
}

// A broker without httpsProxy leaves the proxy's packages out (infra/token-broker/functions.ts lambdaBundling).
const VARIANTS: Variant[] = [
  { name: 'SDK bundled (chosen)', external: [...PROXY_ONLY_MODULES] },
  {
    name: 'SDK from the runtime (@aws-sdk/*, @smithy/* external)',
    external: ['@aws-sdk/*', '@smithy/*', ...PROXY_ONLY_MODULES],
  },
  { name: 'SDK bundled, with httpsProxy (undici bundled)', external: [] },
];

/** The environment the handler validates at cold start; nothing is contacted while loading. */
const DUMMY_ENV = {
  TOKEN_BROKER_SERVICES_TABLE: 'services',
  TOKEN_BROKER_TOKEN_KEY_ID: 'alias/token-broker-local',
  TOKEN_BROKER_TOKEN_CACHE_TABLE: 'tokens',
  TOKEN_BROKER_SECRET_PREFIX: 'token-broker/measure/services/',
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'local',
  AWS_SECRET_ACCESS_KEY: 'local',
  POWERTOOLS_LOG_LEVEL: 'ERROR',
  AWS_SDK_JS_SUPPRESS_NODE_VERSION_WARNING: '1',
};

async function bundle(entry: string, outfile: string, external: string[]): Promise<Metafile> {
  const result = await build({
    entryPoints: [path.join(ROOT, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: LAMBDA_BUNDLING.target,
    minify: LAMBDA_BUNDLING.minify,
    sourcemap: LAMBDA_BUNDLING.sourceMap,
    sourcesContent: LAMBDA_BUNDLING.sourcesContent,
    external,
    metafile: true,
    logLevel: 'error',
  });
  return result.metafile;
}

/**
 * Loads a module in a fresh `node` process and reports the wall time and CPU time `require` took, and the RSS
 * after it. CPU time is the steadier number on a busy machine.
 */
function loadOnce(file: string): { ms: number; cpuMs: number; rssMb: number } {
  const script =
    "const {performance}=require('node:perf_hooks');const c=process.cpuUsage();const t=performance.now();" +
    'require(process.argv[1]);const ms=performance.now()-t;const u=process.cpuUsage(c);' +
    'console.log(JSON.stringify({ms,cpuMs:(u.user+u.system)/1000,rssMb:process.memoryUsage().rss/2**20}))';
  const child = spawnSync(process.execPath, ['-e', script, file], {
    env: { ...process.env, ...DUMMY_ENV },
    encoding: 'utf8',
  });
  if (child.status !== 0) throw new Error(`loading ${file} failed: ${child.stderr}`);
  return JSON.parse(child.stdout.trim().split('\n').pop() as string) as {
    ms: number;
    cpuMs: number;
    rssMb: number;
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

/** Bytes per top-level package (or `project` for this repository's own code) in a bundle. */
function composition(metafile: Metafile): Array<[string, number]> {
  const sizes = new Map<string, number>();
  for (const output of Object.values(metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
      const key = m ? (m[1] as string).replace(/^(@aws-sdk|@smithy)\/.*/, '$1/*') : 'project';
      sizes.set(key, (sizes.get(key) ?? 0) + bytesInOutput);
    }
  }
  return [...sizes.entries()].sort((a, b) => b[1] - a[1]);
}

/** The child that plays one Lambda container: cold start, one token request that misses, then cache hits. */
const REQUEST_CHILD = `
const {performance} = require('node:perf_hooks');
const {randomUUID} = require('node:crypto');
const [bundle, mode, hits] = process.argv.slice(1);
const event = (method, resource, path, pathParameters, body) => ({
  resource, path, httpMethod: method, headers: body ? {'Content-Type': 'application/json'} : {},
  multiValueHeaders: {}, queryStringParameters: null, multiValueQueryStringParameters: null,
  pathParameters, stageVariables: null, body: body ? JSON.stringify(body) : null, isBase64Encoded: false,
  requestContext: {requestId: randomUUID(), httpMethod: method, resourcePath: resource, path, stage: 'measure', identity: {}},
});
const context = () => ({functionName: 'measure', functionVersion: '$LATEST', awsRequestId: randomUUID(),
  invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:measure', memoryLimitInMB: '512',
  getRemainingTimeInMillis: () => 15000, callbackWaitsForEmptyEventLoop: false});
(async () => {
  const cpu0 = process.cpuUsage(); const t0 = performance.now();
  const {handler} = require(bundle);
  const load = {ms: performance.now() - t0, cpuMs: (process.cpuUsage(cpu0).user + process.cpuUsage(cpu0).system) / 1000};
  if (mode === 'create') {
    const r = await handler(event('POST', '/api/v2/system/service', '/api/v2/system/service', null, JSON.parse(process.env.MEASURE_SERVICE)), context());
    if (r.statusCode !== 201) throw new Error('create failed: ' + r.body);
    return;
  }
  const get = () => handler(event('GET', '/api/v2/{service}/client_credentials', '/api/v2/measure/client_credentials', {service: 'measure'}), context());
  const c1 = process.cpuUsage(); const t1 = performance.now();
  const miss = await get();
  if (miss.statusCode !== 200) throw new Error('miss failed: ' + miss.body);
  const first = {ms: performance.now() - t1, cpuMs: (process.cpuUsage(c1).user + process.cpuUsage(c1).system) / 1000};
  const walls = [];
  const c2 = process.cpuUsage();
  for (let i = 0; i < Number(hits); i++) {
    const t = performance.now();
    const r = await get();
    if (r.statusCode !== 200) throw new Error('hit failed: ' + r.body);
    walls.push(performance.now() - t);
  }
  const cpu = process.cpuUsage(c2);
  walls.sort((a, b) => a - b);
  console.log(JSON.stringify({load, first, hitMedianMs: walls[Math.floor(walls.length / 2)],
    hitCpuMs: (cpu.user + cpu.system) / 1000 / Number(hits), maxRssMb: process.resourceUsage().maxRSS / 1024}));
})().catch((e) => { console.error(e); process.exit(1); });
`;

interface RequestMeasurement {
  load: { ms: number; cpuMs: number };
  first: { ms: number; cpuMs: number };
  hitMedianMs: number;
  hitCpuMs: number;
  maxRssMb: number;
}

async function measureRequests(tokenBundle: string, adminBundle: string): Promise<RequestMeasurement> {
  const dataDir = path.join(tmpdir(), `token-broker-measure-${process.pid}`);
  const { default: dynalite } = await import('dynalite');
  const ddb: Server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve) => ddb.listen(0, '127.0.0.1', resolve));
  const secrets = await startSecretsManagerServer({ dataDir });
  const emulator = await EntraEmulator.start();
  const tenant = '3c1d7e9a-5b2f-4a68-9d0e-7f1a2b3c4d5e';
  const clientId = '9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b';
  emulator.registerApp({ tenantId: tenant, clientId, clientSecrets: ['measure-secret'] });
  try {
    const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
    const { ensureTables } = await import('../local/tables');
    const endpoint = `http://127.0.0.1:${(ddb.address() as AddressInfo).port}`;
    const client = new DynamoDBClient({
      endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    await ensureTables(client, { servicesTable: 'services', tokenCacheTable: 'tokens' });
    client.destroy();
    const env = {
      ...process.env,
      ...DUMMY_ENV,
      AWS_ENDPOINT_URL_DYNAMODB: endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.url,
      TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: new URL(emulator.url).host,
      MEASURE_SERVICE: JSON.stringify({
        name: 'measure',
        config: {
          client_id: clientId,
          client_secret: 'measure-secret',
          tenant_id: tenant,
          grant_type: 'client_credentials',
          authority_url: emulator.authorityUrl(tenant),
        },
      }),
    };
    // The stores run in this process, so the children must not block it: spawn asynchronously.
    const run = (args: string[]) =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ['-e', REQUEST_CHILD, ...args], { env });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
        });
        child.stderr.on('data', (d: Buffer) => {
          err += d.toString();
        });
        child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(err))));
      });
    await run([adminBundle, 'create', '0']);
    const out = await run([tokenBundle, 'hits', '300']);
    return JSON.parse(out.trim().split('\n').pop() as string) as RequestMeasurement;
  } finally {
    await emulator.stop();
    await secrets.close();
    await new Promise<void>((resolve) => ddb.close(() => resolve()));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  console.log(`Node ${process.version}, ${RUNS} fresh processes per variant\n`);
  console.log(
    '| token handler | bytes | gzip | load (median) | load (min) | load CPU (median) | RSS after load |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  const built: Array<{ variant: Variant; outfile: string; meta: Metafile }> = [];
  for (const [i, variant] of VARIANTS.entries()) {
    const outfile = path.join(OUT, `variant-${i}`, 'index.js');
    built.push({ variant, outfile, meta: await bundle('functions/token.ts', outfile, variant.external) });
  }
  // Interleaved, so that a change in the machine's load hits both variants alike.
  const loads = built.map(() => [] as Array<{ ms: number; cpuMs: number; rssMb: number }>);
  for (let run = 0; run < RUNS; run++) {
    for (const [i, { outfile }] of built.entries()) loads[i]?.push(loadOnce(outfile));
  }
  for (const [i, { variant, outfile }] of built.entries()) {
    const bytes = statSync(outfile).size;
    const gzip = gzipSync(readFileSync(outfile), { level: 9 }).length;
    const ms = (loads[i] ?? []).map((l) => l.ms);
    const cpu = (loads[i] ?? []).map((l) => l.cpuMs);
    const rss = (loads[i] ?? []).map((l) => l.rssMb);
    console.log(
      `| ${variant.name} | ${bytes.toLocaleString('en')} | ${gzip.toLocaleString('en')} | ` +
        `${median(ms).toFixed(0)} ms | ${Math.min(...ms).toFixed(0)} ms | ${median(cpu).toFixed(0)} ms | ` +
        `${median(rss).toFixed(0)} MB |`,
    );
  }
  const bundledMeta = built[0]?.meta;

  console.log('\nWhat the bundled token handler is made of:');
  for (const [name, bytes] of composition(bundledMeta as Metafile).slice(0, 10)) {
    console.log(`  ${name.padEnd(40)} ${bytes.toLocaleString('en').padStart(9)} bytes`);
  }

  const adminOut = path.join(OUT, 'admin', 'index.js');
  await bundle('functions/admin.ts', adminOut, []);
  const m = await measureRequests(path.join(OUT, 'variant-0', 'index.js'), adminOut);
  console.log('\nToken function (bundled), one container: cold start, one miss, 300 cache hits');
  console.log(`  module load ${m.load.ms.toFixed(0)} ms (${m.load.cpuMs.toFixed(0)} ms CPU)`);
  console.log(
    `  first request (miss: DynamoDB, Secrets Manager, Entra, DynamoDB) ${m.first.ms.toFixed(0)} ms (${m.first.cpuMs.toFixed(1)} ms CPU)`,
  );
  console.log(`  cache hit ${m.hitMedianMs.toFixed(1)} ms median (${m.hitCpuMs.toFixed(2)} ms CPU each)`);
  console.log(`  peak RSS ${m.maxRssMb.toFixed(0)} MB`);
  console.log('\nCPU-bound time at Lambda memory sizes (x 1769/MB; this machine is not a Graviton core):');
  console.log('| memory | init (module load) | first request CPU | cache hit CPU |');
  console.log('|---:|---:|---:|---:|');
  for (const mb of [128, 256, 512, 1024]) {
    const f = 1769 / mb;
    console.log(
      `| ${mb} MB | ${(m.load.cpuMs * f).toFixed(0)} ms | ${(m.first.cpuMs * f).toFixed(0)} ms | ${(m.hitCpuMs * f).toFixed(1)} ms |`,
    );
  }
  rmSync(OUT, { recursive: true, force: true });
}

await main();
