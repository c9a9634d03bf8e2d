/**
 * Deploy fidelity: runs what `cdk deploy` would upload, as it would run. Each function's bundle is taken from
 * the synthesized cloud assembly (found through the asset manifest, exactly as the CLI uploads it) and loaded
 * natively, outside jest's module system; its handler is the one the template names; its environment is the one
 * the template gives that function, with every Ref and Fn::GetAtt resolved to a local stand-in. The tables are
 * created in DynamoDB Local from the template's own table definitions. Both stores are reached through a
 * recording proxy, so the test can also check that every call a bundle makes is allowed by that function's role
 * policy in the template.
 *
 * The app is the VPC variant (`-c vpcId=... -c httpsProxy=...`, the VPC looked up from cached context, the account
 * and region the CLI's) with federated credentials (`-c federationIssuer=...`): the most that differs from a default
 * deployment. Its functions reach Entra only through the HTTPS proxy, here a CONNECT proxy on loopback, and get
 * their web identity tokens from the local STS (local/sts-server.ts), through a recording proxy too: its calls are
 * checked against the role's conditioned sts:GetWebIdentityToken statement (audience, algorithm, duration). The
 * scheduled refresh bundle runs once as well: its store calls are checked the same way, and the gauge it emits
 * must be the metric the template's certificate-expiry alarm watches. KMS is behind a recording proxy too: the calls
 * on kms_certificate signing keys (create, certificate and assertion signatures, retirement) are checked against the
 * roles' tag- and algorithm-conditioned statements.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import {
  CreateTableCommand,
  type CreateTableCommandInput,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager';
import type { CfnResource } from 'aws-cdk-lib';
import { AssetManifestArtifact } from 'aws-cdk-lib/cx-api';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { ENTRA_FAILURES_METRIC } from '../../infra/token-broker';
import { CERTIFICATE_DAYS_TO_EXPIRY_METRIC } from '../../lib/metrics';
import { type FunctionName, ROUTES } from '../../lib/routes';
import { DEFAULT_MEMORY_BOUND_MS } from '../../lib/token-memory';
import { ensureLocalKey, LOCAL_KMS_KEY_ALIAS, startKmsServer } from '../../local/kms-server';
import { startSecretsManagerServer } from '../../local/secrets-manager-server';
import { type RunningStsServer, startStsServer } from '../../local/sts-server';
import { apiGatewayEvent, localLambdaContext } from '../fixtures/apigw-event';
import { createClientCertificate } from '../fixtures/client-certificates';
import { type ConnectProxy, startConnectProxy } from '../fixtures/connect-proxy';
import { dynamoDbLocalClient, dynamoDbLocalEndpoint } from '../fixtures/dynamodb';
import { EntraEmulator } from '../fixtures/entra-emulator';
import { secretsManagerClient } from '../fixtures/secrets-manager';
import { synthesizeBroker, vpcLookupContext } from '../infra/synth';

type Handler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;
/** The bundles this test loads: the API's token and admin functions, and the scheduled refresh. */
type BundleName = FunctionName | 'refresh';
type Json = Record<string, unknown>;

/** What the local Secrets Manager writes into ARNs, and what the template's pseudo parameters stand for here. */
const REGION = 'us-east-1';
const ACCOUNT = '000000000000';
const VPC_ID = 'vpc-0f1e2d3c4b5a69788';
const TENANT = '3c1d7e9a-5b2f-4a68-9d0e-7f1a2b3c4d5e';
const CLIENT_ID = '9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b';
const CLIENT_SECRET = 'fidelity-client-secret~value';
const SERVICE = 'fidelity';
/** A service whose client secret already exists outside the broker's prefix (config.client_secret_arn). */
const REFERENCING_SERVICE = 'fidelity-byo';
const SHARED_SECRETS = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:shared/entra/*`;
/** A service with a federated credential: the token bundle sends an STS web identity token of its role. */
const FEDERATED_SERVICE = 'fidelity-federated';
/** A service with an imported certificate, whose days left the scheduled refresh reports. */
const CERTIFICATE_SERVICE = 'fidelity-certificate';
/** A service whose certificate the broker issues for a KMS key it creates (kms_certificate). */
const KMS_SERVICE = 'fidelity-kms';
const DAY_MS = 24 * 60 * 60 * 1000;
/** What `aws iam enable-outbound-web-identity-federation` would have printed for this account. */
const FEDERATION_ISSUER = 'https://7c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f.tokens.sts.global.api.aws';
const TOKEN_RESOURCE = ROUTES.find((r) => r.function === 'token')?.resource as string;
const ADMIN_RESOURCE = '/api/v2/system/service';

/** One call a bundle made to a store, as the recording proxy saw it. */
interface StoreCall {
  /** The function whose invocation made the call; `outside` for calls made between invocations. */
  fn: BundleName | 'outside';
  /** IAM action, e.g. `dynamodb:GetItem`. */
  action: string;
  /** The DynamoDB table name or the secret ARN (or name) the call addressed; `*` for STS. */
  target: string;
  body: Json;
  /** The IAM condition keys the call sets (STS: audience, signing algorithm, duration). */
  context?: Record<string, string | string[]>;
}

const calls: StoreCall[] = [];
let current: BundleName | undefined;

/**
 * A proxy in front of a store that records each call and forwards it untouched: JSON protocol (X-Amz-Target) for
 * DynamoDB and Secrets Manager, AWS Query (a form-encoded `Action`) for STS.
 */
async function startRecordingProxy(
  upstream: string,
  service: 'dynamodb' | 'secretsmanager' | 'sts' | 'kms',
): Promise<Server> {
  const target = new URL(upstream);
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      if (service === 'kms') {
        forwardRecordingSigningKeyCalls(target, req, res, raw);
        return;
      }
      if (service === 'sts') {
        const form = new URLSearchParams(raw.toString('utf8'));
        const audiences = [...form.entries()]
          .filter(([k]) => k.startsWith('Audience.member.'))
          .map(([, v]) => v);
        calls.push({
          fn: current ?? 'outside',
          action: `sts:${form.get('Action') ?? 'unknown'}`,
          target: '*',
          body: {},
          context: {
            'sts:IdentityTokenAudience': audiences,
            ...(form.has('SigningAlgorithm')
              ? { 'sts:SigningAlgorithm': form.get('SigningAlgorithm') as string }
              : {}),
            ...(form.has('DurationSeconds')
              ? { 'sts:DurationSeconds': form.get('DurationSeconds') as string }
              : {}),
          },
        });
      } else {
        const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? 'unknown';
        const body = (raw.length > 0 ? JSON.parse(raw.toString('utf8')) : {}) as Json;
        for (const addressed of addressedResources(service, body)) {
          calls.push({
            fn: current ?? 'outside',
            action: `${service}:${operation}`,
            target: addressed,
            body,
          });
        }
      }
      const forward = httpRequest(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
        (upstreamRes) => {
          res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
          upstreamRes.pipe(res);
        },
      );
      forward.on('error', (error) => res.destroy(error));
      forward.end(raw);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** What IAM knows about a signing key when it evaluates a call on it: its tags, spec and usage. */
const signingKeys = new Map<string, { tags: Record<string, string>; spec: string; usage: string }>();
/** The KMS operations on the asymmetric signing keys of kms_certificate services. */
const SIGNING_KEY_OPERATIONS = ['CreateKey', 'DescribeKey', 'GetPublicKey', 'Sign', 'ScheduleKeyDeletion'];

/**
 * KMS: forwards every call, and records the calls on signing keys with the condition keys IAM evaluates for them
 * (CreateKey: aws:RequestTag/*, aws:TagKeys, kms:KeySpec, kms:KeyUsage, and the TagResource it implies; on a key:
 * aws:ResourceTag/*, kms:KeySpec, kms:KeyUsage, and kms:SigningAlgorithm for Sign). The token-sealing data key calls
 * (GenerateDataKey, Decrypt under an encryption context) are forwarded without being recorded.
 */
function forwardRecordingSigningKeyCalls(
  target: URL,
  req: import('node:http').IncomingMessage,
  res: import('node:http').ServerResponse,
  raw: Buffer,
): void {
  const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? 'unknown';
  const body = (raw.length > 0 ? JSON.parse(raw.toString('utf8')) : {}) as Json;
  const fn = current ?? 'outside';
  const forward = httpRequest(
    { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
    (upstreamRes) => {
      const answer: Buffer[] = [];
      upstreamRes.on('data', (c: Buffer) => answer.push(c));
      upstreamRes.on('end', () => {
        const out = Buffer.concat(answer);
        if (SIGNING_KEY_OPERATIONS.includes(operation) && (upstreamRes.statusCode ?? 500) < 300) {
          recordSigningKeyCall(fn, operation, body, JSON.parse(out.toString('utf8') || '{}') as Json);
        }
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        res.end(out);
      });
    },
  );
  forward.on('error', (error) => res.destroy(error));
  forward.end(raw);
}

function recordSigningKeyCall(fn: BundleName | 'outside', operation: string, body: Json, answer: Json): void {
  if (operation === 'CreateKey') {
    const tags = Object.fromEntries(
      asArray(body.Tags as Array<{ TagKey: string; TagValue: string }>).map((t) => [t.TagKey, t.TagValue]),
    );
    const arn = (answer.KeyMetadata as { Arn: string }).Arn;
    signingKeys.set(arn, { tags, spec: String(body.KeySpec), usage: String(body.KeyUsage) });
    const context = {
      ...Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:RequestTag/${k}`, v])),
      'aws:TagKeys': Object.keys(tags),
      'kms:KeySpec': String(body.KeySpec),
      'kms:KeyUsage': String(body.KeyUsage),
    };
    calls.push({ fn, action: 'kms:CreateKey', target: '*', body, context });
    // CreateKey with Tags is also authorized as TagResource on the new key.
    calls.push({ fn, action: 'kms:TagResource', target: arn, body, context });
    return;
  }
  const key = signingKeys.get(String(body.KeyId));
  if (!key) return;
  calls.push({
    fn,
    action: `kms:${operation}`,
    target: String(body.KeyId),
    body,
    context: {
      ...Object.fromEntries(Object.entries(key.tags).map(([k, v]) => [`aws:ResourceTag/${k}`, v])),
      'kms:KeySpec': key.spec,
      'kms:KeyUsage': key.usage,
      ...(operation === 'Sign' ? { 'kms:SigningAlgorithm': String(body.SigningAlgorithm) } : {}),
    },
  });
}

function addressedResources(service: 'dynamodb' | 'secretsmanager', body: Json): string[] {
  if (service === 'dynamodb') {
    if (typeof body.TableName === 'string') return [body.TableName];
    return Object.keys((body.RequestItems as Json | undefined) ?? {});
  }
  const id = (body.SecretId ?? body.Name) as string;
  return [id.startsWith('arn:') ? id : `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${id}`];
}

function urlOf(server: Server): string {
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Renders a template value with the pseudo parameters of this local "account". */
function render(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Json;
  if (v.Ref === 'AWS::Partition') return 'aws';
  if (v.Ref === 'AWS::Region') return REGION;
  if (v.Ref === 'AWS::AccountId') return ACCOUNT;
  if (Array.isArray(v['Fn::Join'])) {
    const [separator, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map(render).join(separator);
  }
  throw new Error(`cannot render ${JSON.stringify(value)}`);
}

/** IAM's ARN matching: `*` any run of characters, `?` one character. */
function arnMatches(pattern: string, arn: string): boolean {
  const regex = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${regex}$`).test(arn);
}

const asArray = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/**
 * Whether a statement's Condition holds for a call's condition keys, for the operators the broker's policies use
 * (IAM's semantics: a missing key fails StringEquals and NumericLessThanEquals, ForAllValues holds for every value
 * of a multivalued key). Any other operator fails the test rather than passing it unseen.
 */
function conditionHolds(
  condition: Record<string, Record<string, unknown>> | undefined,
  context: Record<string, string | string[]>,
): boolean {
  return Object.entries(condition ?? {}).every(([operator, keys]) =>
    Object.entries(keys).every(([key, expected]) => {
      const allowed = asArray(expected as unknown).map(String);
      const actual = context[key];
      switch (operator) {
        case 'StringEquals':
          return (
            actual !== undefined &&
            asArray(actual).length === 1 &&
            allowed.includes(asArray(actual)[0] as string)
          );
        case 'ForAllValues:StringEquals':
          return asArray(actual).every((v) => allowed.includes(v));
        case 'Null':
          return (actual === undefined || asArray(actual).length === 0) === (allowed[0] === 'true');
        case 'NumericLessThanEquals':
          return actual !== undefined && Number(actual) <= Number(allowed[0]);
        default:
          throw new Error(`the fidelity check cannot evaluate ${operator}`);
      }
    }),
  );
}

let workDir: string;
let emulator: EntraEmulator;
let entraProxy: ConnectProxy;
let secrets: { url: string; close(): Promise<void> };
let dynamoProxy: Server;
let secretsProxy: Server;
let sts: RunningStsServer | undefined;
let stsProxy: Server;
let kmsProxy: Server;
let federationSubject: string;
let resources: Record<string, { Type: string; Properties: Json }>;
const handlers = {} as Record<BundleName, Handler>;
const logicalIds = {} as Record<BundleName, string>;
const tableNames: Record<string, string> = {};
let keyArn: string;
let localKeyArn: string;
let kms: { url: string; close(): Promise<void> } | undefined;
let etag: string;
let secretPrefix: string;
const savedEnv = { ...process.env };

/** One invocation's result, and the lines the function wrote (its logs, and on stdout its EMF metric documents). */
interface Invocation {
  status: number;
  body: Json;
  headers: Record<string, unknown>;
  stdout: string[];
  stderr: string[];
}

/** Replaces a stream's write with one that keeps the lines; returns the function that puts it back. */
function capture(stream: NodeJS.WriteStream, lines: string[]): () => void {
  const write = stream.write;
  stream.write = ((chunk: string | Uint8Array) => {
    lines.push(
      ...String(chunk)
        .split('\n')
        .filter((line) => line.length > 0),
    );
    return true;
  }) as typeof stream.write;
  return () => {
    stream.write = write;
  };
}

/**
 * Invokes a bundled handler the way Lambda does, recording which function the store calls belong to and
 * keeping what it writes (where Lambda would take its logs and EMF metrics from) out of jest's output.
 */
async function invoke(fn: FunctionName, event: APIGatewayProxyEvent): Promise<Invocation> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const restore = [capture(process.stdout, stdout), capture(process.stderr, stderr)];
  current = fn;
  try {
    const timeoutMs = Number(resources[logicalIds[fn]]?.Properties.Timeout) * 1000;
    const result = await handlers[fn](event, localLambdaContext(`fidelity-${fn}`, timeoutMs));
    const body = JSON.parse(result.body) as Json;
    return { status: result.statusCode, body, headers: result.headers ?? {}, stdout, stderr };
  } finally {
    current = undefined;
    for (const undo of restore) undo();
  }
}

/** Runs the scheduled refresh bundle once, as its EventBridge rule would. */
async function invokeRefresh(): Promise<{ result: Json; stdout: string[] }> {
  const stdout: string[] = [];
  const restore = [capture(process.stdout, stdout), capture(process.stderr, [])];
  current = 'refresh';
  try {
    const timeoutMs = Number(resources[logicalIds.refresh]?.Properties.Timeout) * 1000;
    const run = handlers.refresh as unknown as (event: unknown, context: Context) => Promise<Json>;
    const result = await run({ source: 'aws.events' }, localLambdaContext('fidelity-refresh', timeoutMs));
    return { result, stdout };
  } finally {
    current = undefined;
    for (const undo of restore) undo();
  }
}

const tokenEvent = (method: string, service = SERVICE) =>
  apiGatewayEvent({
    method,
    resource: TOKEN_RESOURCE,
    path: TOKEN_RESOURCE.replace('{service}', service),
    pathParameters: { service },
  });

const serviceEvent = (method: string, headers: Record<string, string> = {}, body?: unknown) =>
  apiGatewayEvent({
    method,
    resource: `${ADMIN_RESOURCE}/{name}`,
    path: `${ADMIN_RESOURCE}/${SERVICE}`,
    pathParameters: { name: SERVICE },
    headers,
    body,
  });

/** The config of a service authenticating with the emulator's app (its secret added by each test). */
const emulatorConfig = () => ({
  client_id: CLIENT_ID,
  tenant_id: TENANT,
  grant_type: 'client_credentials',
  scopes: 'https://graph.microsoft.com/.default',
  authority_url: emulator.authorityUrl(TENANT),
});

// Synthesis bundles three functions with esbuild: on a busy 2-core machine that alone can take a minute.
beforeAll(async () => {
  // Prepare: the stand-ins the template's references resolve to.
  workDir = mkdtempSync(path.join(tmpdir(), 'token-broker-fidelity-'));
  emulator = await EntraEmulator.start();
  emulator.registerApp({ tenantId: TENANT, clientId: CLIENT_ID, clientSecrets: [CLIENT_SECRET] });
  secrets = await startSecretsManagerServer({
    dataDir: path.join(workDir, 'secrets'),
    region: REGION,
    accountId: ACCOUNT,
  });
  // The stack's KMS key (it seals cached tokens and encrypts secrets) stands in as a key of a local KMS server.
  kms = await startKmsServer({ dataDir: path.join(workDir, 'kms'), region: REGION, accountId: ACCOUNT });
  localKeyArn = await ensureLocalKey(
    new KMSClient({
      endpoint: kms.url,
      region: REGION,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    }),
    LOCAL_KMS_KEY_ALIAS,
  );
  entraProxy = await startConnectProxy();
  dynamoProxy = await startRecordingProxy(dynamoDbLocalEndpoint(), 'dynamodb');
  secretsProxy = await startRecordingProxy(secrets.url, 'secretsmanager');
  kmsProxy = await startRecordingProxy(kms.url, 'kms');

  // Synthesize as `cdk synth` does; the emulator's host is allowed through context, like any authority host.
  const { stack, assembly } = synthesizeBroker(
    {
      stage: 'fidelity',
      allowedAuthorityHosts: new URL(emulator.url).host,
      allowedSecretArns: SHARED_SECRETS,
      logLevel: 'WARN',
      vpcId: VPC_ID,
      httpsProxy: entraProxy.url,
      federationIssuer: FEDERATION_ISSUER,
      ...vpcLookupContext(ACCOUNT, REGION, VPC_ID),
    },
    { outdir: path.join(workDir, 'cdk.out'), environment: { account: ACCOUNT, region: REGION } },
  );
  const artifact = assembly.getStackByName(stack.stackName);
  resources = (artifact.template as { Resources: typeof resources }).Resources;
  logicalIds.token = stack.getLogicalId(stack.broker.tokenFunction.node.defaultChild as CfnResource);
  logicalIds.admin = stack.getLogicalId(stack.broker.adminFunction.node.defaultChild as CfnResource);
  logicalIds.refresh = stack.getLogicalId(stack.broker.refreshFunction?.node.defaultChild as CfnResource);
  secretPrefix = stack.broker.secretPrefix;
  // The role the token functions share: STS names it as the subject of their tokens.
  const tokenFunction = resources[logicalIds.token] as { Properties: Json };
  const tokenRoleId = (tokenFunction.Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
  const roleArnOf = (id: string) => `arn:aws:iam::${ACCOUNT}:role/${id}`;
  federationSubject = roleArnOf(tokenRoleId);
  sts = await startStsServer({ roleArn: federationSubject, region: REGION });
  stsProxy = await startRecordingProxy(sts.url, 'sts');

  // Tables exactly as the template defines them.
  const ddb = dynamoDbLocalClient();
  const suffix = randomUUID().slice(0, 8);
  for (const [id, resource] of Object.entries(resources)) {
    if (resource.Type !== 'AWS::DynamoDB::Table') continue;
    const p = resource.Properties;
    tableNames[id] = `fidelity-${id}-${suffix}`;
    await ddb.send(
      new CreateTableCommand({
        TableName: tableNames[id],
        KeySchema: p.KeySchema,
        AttributeDefinitions: p.AttributeDefinitions,
        BillingMode: p.BillingMode,
      } as CreateTableCommandInput),
    );
    const ttl = p.TimeToLiveSpecification as { AttributeName: string; Enabled: boolean } | undefined;
    if (ttl?.Enabled) {
      await ddb.send(
        new UpdateTimeToLiveCommand({
          TableName: tableNames[id],
          TimeToLiveSpecification: { AttributeName: ttl.AttributeName, Enabled: true },
        }),
      );
    }
  }
  ddb.destroy();
  const keyId = Object.keys(resources).find((id) => resources[id]?.Type === 'AWS::KMS::Key') as string;
  keyArn = localKeyArn;
  const resolve = (value: unknown): string => {
    if (typeof value === 'string') return value;
    const v = value as Json;
    if (typeof v.Ref === 'string' && tableNames[v.Ref]) return tableNames[v.Ref] as string;
    const getAtt = v['Fn::GetAtt'] as [string, string] | undefined;
    if (getAtt && getAtt[0] === keyId && getAtt[1] === 'Arn') return keyArn;
    if (getAtt && resources[getAtt[0]]?.Type === 'AWS::IAM::Role' && getAtt[1] === 'Arn')
      return roleArnOf(getAtt[0]);
    throw new Error(`no local stand-in for ${JSON.stringify(value)}`);
  };

  // The asset manifest maps each function's S3 key to the directory the CLI would zip and upload.
  const manifest = artifact.dependencies.find(
    (a) => a instanceof AssetManifestArtifact,
  ) as AssetManifestArtifact;
  const assetDirs = new Map<string, string>();
  for (const file of Object.values(manifest.contents.files ?? {})) {
    for (const destination of Object.values(file.destinations)) {
      assetDirs.set(destination.objectKey, path.join(assembly.directory, file.source.path as string));
    }
  }

  const nativeRequire = process.getBuiltinModule('node:module').createRequire(__filename);
  let previous: string[] = [];
  for (const fn of ['admin', 'token', 'refresh'] as const) {
    const props = resources[logicalIds[fn]]?.Properties as Json;
    const variables = (props.Environment as { Variables: Json }).Variables;
    // NODE_OPTIONS only acts when a process starts, and this one is running already.
    const { NODE_OPTIONS: _processFlag, ...env } = Object.fromEntries(
      Object.entries(variables).map(([k, v]) => [k, resolve(v)]),
    );
    // The bundles read their environment at cold start: set exactly this function's before loading it.
    for (const key of previous) delete process.env[key];
    previous = Object.keys(env);
    Object.assign(process.env, env, {
      // DynamoDB Local keeps tables per access key and region: the same as the client that created them.
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_ENDPOINT_URL_DYNAMODB: urlOf(dynamoProxy),
      AWS_ENDPOINT_URL_SECRETS_MANAGER: urlOf(secretsProxy),
      AWS_ENDPOINT_URL_KMS: urlOf(kmsProxy),
      AWS_ENDPOINT_URL_STS: urlOf(stsProxy),
    });
    const assetDir = assetDirs.get((props.Code as { S3Key: string }).S3Key) as string;
    const [file, exportName] = (props.Handler as string).split('.') as [string, string];
    handlers[fn] = (nativeRequire(path.join(assetDir, `${file}.js`)) as Record<string, Handler>)[
      exportName
    ] as Handler;
  }
}, 180_000);

afterAll(async () => {
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
  await Promise.all([
    emulator?.stop(),
    entraProxy?.stop(),
    secrets?.close(),
    kms?.close(),
    dynamoProxy && closeServer(dynamoProxy),
    secretsProxy && closeServer(secretsProxy),
    sts?.close(),
    stsProxy && closeServer(stsProxy),
    kmsProxy && closeServer(kmsProxy),
  ]);
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('the bundles cdk deploy would upload, with the environment the template gives them', () => {
  it('creates a service through the admin bundle', async () => {
    const response = await invoke(
      'admin',
      apiGatewayEvent({
        method: 'POST',
        resource: ADMIN_RESOURCE,
        path: ADMIN_RESOURCE,
        body: {
          name: SERVICE,
          label: 'Deploy fidelity',
          type: 'oauth_azure_ad',
          is_active: true,
          config: { ...emulatorConfig(), client_secret: CLIENT_SECRET },
        },
      }),
    );
    etag = String(response.headers.ETag);

    expect(response.status).toBe(201);
    expect(JSON.stringify(response.body)).not.toContain(CLIENT_SECRET);
  });

  it('stores the client secret under the template prefix, encrypted with the template key', () => {
    const created = calls.filter((c) => c.action === 'secretsmanager:CreateSecret');

    expect(created).toHaveLength(1);
    expect(created[0]?.body.Name).toEqual(expect.stringMatching(new RegExp(`^${secretPrefix}${SERVICE}/`)));
    expect(created[0]?.body.KmsKeyId).toBe(keyArn);
  });

  it('serves a token from Entra through the token bundle', async () => {
    const response = await invoke('token', tokenEvent('GET'));

    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ token_type: 'Bearer', access_token: emulator.issuedTokens[0] });
    expect(emulator.tokenRequestCount).toBe(1);
  });

  it('reached Entra only through the HTTPS proxy the template gives the token function', () => {
    expect(entraProxy.tunnels.length).toBeGreaterThan(0);
    expect(new Set(entraProxy.tunnels)).toEqual(new Set([new URL(emulator.url).host]));
  });

  it('answers the second GET from the cache: two GETs, one Entra request', async () => {
    const response = await invoke('token', tokenEvent('GET'));

    expect(response.status).toBe(200);
    expect(response.body.access_token).toBe(emulator.issuedTokens[0]);
    expect(emulator.tokenRequestCount).toBe(1);
  });

  it('clears the cache, so the next GET asks Entra again', async () => {
    const cleared = await invoke('token', tokenEvent('DELETE'));
    const after = await invoke('token', tokenEvent('GET'));

    expect(cleared).toMatchObject({
      status: 200,
      body: { success: true, message: 'Token cache cleared successfully.' },
    });
    expect(after.status).toBe(200);
    expect(emulator.tokenRequestCount).toBe(2);
  });

  it('changes a service with If-Match, after which the token bundle asks Entra again', async () => {
    const changed = await invoke('admin', serviceEvent('PATCH', { 'If-Match': etag }, { label: 'Renamed' }));
    // The token function's memory tier may serve what it read for up to the documented bound (lib/token-memory.ts).
    await delay(DEFAULT_MEMORY_BOUND_MS + 50);
    const after = await invoke('token', tokenEvent('GET'));

    expect(changed.status).toBe(200);
    expect(changed.body.label).toBe('Renamed');
    expect(after.status).toBe(200);
    expect(emulator.tokenRequestCount).toBe(3);
  });

  it('serves a token for a service that references an existing secret by ARN', async () => {
    const sm = secretsManagerClient(secrets.url);
    const existing = await sm.send(
      new CreateSecretCommand({ Name: 'shared/entra/fidelity', SecretString: CLIENT_SECRET }),
    );
    sm.destroy();
    const created = await invoke(
      'admin',
      apiGatewayEvent({
        method: 'POST',
        resource: ADMIN_RESOURCE,
        path: ADMIN_RESOURCE,
        body: { name: REFERENCING_SERVICE, config: { ...emulatorConfig(), client_secret_arn: existing.ARN } },
      }),
    );
    const token = await invoke('token', tokenEvent('GET', REFERENCING_SERVICE));

    expect(created.status).toBe(201);
    expect(token.status).toBe(200);
  });

  it('deletes a service, after which the token bundle no longer knows it', async () => {
    const deleted = await invoke('admin', serviceEvent('DELETE'));
    await delay(DEFAULT_MEMORY_BOUND_MS + 50);
    const after = await invoke('token', tokenEvent('GET'));

    expect(deleted.status).toBe(200);
    expect(after.status).toBe(404);
  });

  it('emits the EntraFailures metric the alarm watches when Entra fails', async () => {
    // A refusal Entra would not change on retry (4xx), so the handler answers at once.
    emulator.failNext(
      {
        kind: 'json',
        status: 400,
        body: { error: 'invalid_scope', error_description: 'AADSTS70011: invalid scope.' },
      },
      100,
    );
    const refused = await invoke('token', tokenEvent('POST', REFERENCING_SERVICE)).finally(() =>
      emulator.clearFaults(),
    );
    const failures = refused.stdout
      .filter((line) => line.includes('"_aws"'))
      .map((line) => JSON.parse(line) as Json)
      .find((doc) => doc[ENTRA_FAILURES_METRIC.metricName] !== undefined);
    type Emf = { CloudWatchMetrics?: Array<{ Namespace: string; Dimensions: string[][] }> };
    const emf = (failures?._aws as Emf | undefined)?.CloudWatchMetrics?.[0];

    expect(refused.status).toBe(502);
    expect(emf?.Namespace).toBe(ENTRA_FAILURES_METRIC.namespace);
    expect(emf?.Dimensions).toContainEqual(['service']);
    expect(failures?.service).toBe(ENTRA_FAILURES_METRIC.service);
  });

  it("answers GET /api/v2/system/federation with the template's issuer and the token functions' role", async () => {
    const response = await invoke(
      'admin',
      apiGatewayEvent({
        method: 'GET',
        resource: '/api/v2/system/federation',
        path: '/api/v2/system/federation',
      }),
    );

    expect(response.status).toBe(200);
    expect(response.body).toEqual({
      issuer: FEDERATION_ISSUER,
      subject: federationSubject,
      audience: 'api://AzureADTokenExchange',
    });
  });

  it('serves a token for a federated service: the token bundle sends its STS web identity token to Entra', async () => {
    const requestsBefore = emulator.tokenRequestCount;
    const created = await invoke(
      'admin',
      apiGatewayEvent({
        method: 'POST',
        resource: ADMIN_RESOURCE,
        path: ADMIN_RESOURCE,
        body: { name: FEDERATED_SERVICE, config: { ...emulatorConfig(), credential_type: 'federated' } },
      }),
    );
    // The app registration trusts the broker's role, as an administrator would set it up from the answer above
    // (the issuer being the local STS, which serves its JWKS to the emulator).
    emulator.addFederatedCredential(CLIENT_ID, {
      issuer: (sts as RunningStsServer).issuer,
      subject: federationSubject,
      audience: 'api://AzureADTokenExchange',
    });
    const token = await invoke('token', tokenEvent('GET', FEDERATED_SERVICE));

    expect(created.status).toBe(201);
    expect(token.status).toBe(200);
    expect(emulator.tokenRequestCount).toBe(requestsBefore + 1);
    expect(calls.filter((c) => c.action === 'sts:GetWebIdentityToken' && c.fn === 'token')).toHaveLength(1);
  });

  it('emits CertificateDaysToExpiry from the refresh bundle exactly as the expiry alarm of the template watches it', async () => {
    const certificate = await createClientCertificate({
      notBefore: new Date(Date.now() - DAY_MS),
      notAfter: new Date(Date.now() + 20 * DAY_MS + 3_600_000),
    });
    const created = await invoke(
      'admin',
      apiGatewayEvent({
        method: 'POST',
        resource: ADMIN_RESOURCE,
        path: ADMIN_RESOURCE,
        body: {
          name: CERTIFICATE_SERVICE,
          config: {
            ...emulatorConfig(),
            credential_type: 'certificate',
            certificate: certificate.certificatePem,
            private_key: certificate.privateKeyPem,
          },
        },
      }),
    );
    const { result, stdout } = await invokeRefresh();
    const alarm = Object.values(resources).find(
      (r) =>
        r.Type === 'AWS::CloudWatch::Alarm' && r.Properties.MetricName === CERTIFICATE_DAYS_TO_EXPIRY_METRIC,
    )?.Properties as { Namespace: string; Dimensions: Array<{ Name: string; Value: string }> };
    const emitted = stdout
      .filter((line) => line.includes('"_aws"'))
      .map((line) => JSON.parse(line) as Json)
      .find((doc) => doc[CERTIFICATE_DAYS_TO_EXPIRY_METRIC] !== undefined);
    type Emf = { CloudWatchMetrics?: Array<{ Namespace: string; Dimensions: string[][] }> };
    const emf = (emitted?._aws as Emf | undefined)?.CloudWatchMetrics?.[0];

    expect(created.status).toBe(201);
    expect(result).toMatchObject({ failed: 0 });
    expect(asArray(emitted?.[CERTIFICATE_DAYS_TO_EXPIRY_METRIC] as number | number[])).toEqual([20]);
    expect(emf?.Namespace).toBe(alarm.Namespace);
    expect(emf?.Dimensions).toContainEqual(alarm.Dimensions.map((d) => d.Name));
    for (const d of alarm.Dimensions) expect(emitted?.[d.Name]).toBe(d.Value);
  });

  it('serves tokens for a kms_certificate service: the admin bundle creates and rotates its key, the token bundle signs', async () => {
    const post = (resource: string, pathName: string, body?: unknown, name?: string) =>
      invoke(
        'admin',
        apiGatewayEvent({
          method: 'POST',
          resource,
          path: pathName,
          body,
          ...(name ? { pathParameters: { name } } : {}),
        }),
      );
    const created = await post(ADMIN_RESOURCE, ADMIN_RESOURCE, {
      name: KMS_SERVICE,
      config: { ...emulatorConfig(), credential_type: 'kms_certificate' },
    });
    const createdConfig = created.body.config as Json;
    emulator.addCertificate(CLIENT_ID, { pem: createdConfig.certificate as string });
    const first = await invoke('token', tokenEvent('GET', KMS_SERVICE));
    const next = await post(
      `${ADMIN_RESOURCE}/{name}/certificate`,
      `${ADMIN_RESOURCE}/${KMS_SERVICE}/certificate`,
      undefined,
      KMS_SERVICE,
    );
    emulator.addCertificate(CLIENT_ID, { pem: next.body.certificate as string });
    const switched = await invoke(
      'admin',
      apiGatewayEvent({
        method: 'PATCH',
        resource: `${ADMIN_RESOURCE}/{name}`,
        path: `${ADMIN_RESOURCE}/${KMS_SERVICE}`,
        pathParameters: { name: KMS_SERVICE },
        body: { config: { active_certificate: next.body.certificate_thumbprint_sha256 } },
      }),
    );
    const second = await invoke('token', tokenEvent('POST', KMS_SERVICE));
    const kmsCalls = calls.filter((c) => c.action.startsWith('kms:'));

    expect([created.status, first.status, next.status, switched.status, second.status]).toEqual([
      201, 200, 201, 200, 200,
    ]);
    expect(kmsCalls.filter((c) => c.action === 'kms:CreateKey').map((c) => c.fn)).toEqual(['admin', 'admin']);
    expect(
      new Set(
        kmsCalls.filter((c) => c.action === 'kms:Sign').map((c) => `${c.fn} ${c.body.SigningAlgorithm}`),
      ),
    ).toEqual(new Set(['admin RSASSA_PKCS1_V1_5_SHA_256', 'token RSASSA_PSS_SHA_256']));
    expect(kmsCalls.filter((c) => c.action === 'kms:ScheduleKeyDeletion').map((c) => c.fn)).toEqual([
      'admin',
    ]);
  });

  it("allows every store call each bundle made in that function's role policy", () => {
    const denied: string[] = [];
    for (const fn of ['admin', 'token', 'refresh'] as const) {
      const fnProps = resources[logicalIds[fn]]?.Properties as Json;
      const roleId = (fnProps.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
      const statements = Object.values(resources)
        .filter(
          (r) =>
            r.Type === 'AWS::IAM::Policy' &&
            asArray(r.Properties.Roles).some((ref) => (ref as Json).Ref === roleId),
        )
        .flatMap((r) => asArray((r.Properties.PolicyDocument as { Statement: Json[] }).Statement))
        .filter((s) => s.Effect === 'Allow');
      // DynamoDB and Secrets Manager calls carry no condition keys here: only unconditional statements allow them.
      const allowed = (action: string, target: string, context: StoreCall['context'] = {}): boolean =>
        statements.some(
          (s) =>
            asArray(s.Action as string | string[]).includes(action) &&
            conditionHolds(s.Condition as Record<string, Record<string, unknown>> | undefined, context) &&
            asArray(s.Resource).some((resource) => {
              if (action.startsWith('dynamodb:')) {
                const getAtt = (resource as Json)['Fn::GetAtt'] as [string, string] | undefined;
                return getAtt !== undefined && tableNames[getAtt[0]] === target;
              }
              return arnMatches(render(resource), target);
            }),
        );
      for (const call of calls.filter((c) => c.fn === fn)) {
        if (!allowed(call.action, call.target, call.context))
          denied.push(`${fn}: ${call.action} on ${call.target}`);
        // CreateSecret with tags also needs TagResource.
        const tagged = call.action === 'secretsmanager:CreateSecret' && asArray(call.body.Tags).length > 0;
        if (tagged && !allowed('secretsmanager:TagResource', call.target))
          denied.push(`${fn}: TagResource on ${call.target}`);
      }
    }

    expect(calls.filter((c) => c.fn === 'token').length).toBeGreaterThan(0);
    expect(calls.filter((c) => c.fn === 'admin').length).toBeGreaterThan(0);
    expect(calls.filter((c) => c.fn === 'refresh').length).toBeGreaterThan(0);
    expect(calls.filter((c) => c.action === 'sts:GetWebIdentityToken')).not.toEqual([]);
    expect(calls.filter((c) => c.action === 'kms:Sign').length).toBeGreaterThan(1);
    expect(denied).toEqual([]);
  });

  it('makes no store calls outside a request (none at cold start)', () => {
    expect(calls.filter((c) => c.fn === 'outside')).toEqual([]);
  });
});
