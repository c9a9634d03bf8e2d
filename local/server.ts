/**
 * Local mode (`npm start`): serves the broker's API on http://127.0.0.1:$PORT by turning each HTTP request into
 * the API Gateway REST proxy event the Lambda would receive and calling the same production handler with it.
 *
 * Storage is real protocol, not a second implementation: the handlers' DynamoDB, Secrets Manager and KMS adapters
 * talk over HTTP to `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL_KMS` when
 * set, and otherwise to an embedded dynalite and embedded Secrets Manager and KMS servers (local/), all persisted
 * under TOKEN_BROKER_DATA_DIR; the KMS key that seals cached tokens is `alias/token-broker-local`.
 * An embedded STS (unless AWS_ENDPOINT_URL_STS is set) issues the web identity tokens of federated services.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { AWS_CALL_LIMITS, awsClientOptions } from '../functions/aws-clients';
import { MethodNotAllowedError, NotFoundError, PayloadTooLargeError } from '../lib/errors';
import { errorResponse } from '../lib/http';
import { type FunctionName, matchRoute } from '../lib/routes';
import { buildProxyEvent, localLambdaContext } from './apigw-event';
import { type AuthorizedIdentity, authorizeRequest, refusalResponse } from './iam-authorizer';
import { LocalIamPolicy } from './iam-policy';
import { ensureLocalKey, LOCAL_KMS_KEY_ALIAS, startKmsServer } from './kms-server';
import { startSecretsManagerServer } from './secrets-manager-server';
import { seedServiceFromEnvironment } from './seed';
import { DEFAULT_LOCAL_ROLE_ARN, startStsServer } from './sts-server';
import { ensureTables } from './tables';

type Handler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;

/**
 * The functions' timeouts as the CDK construct deploys them by default (infra/token-broker.ts: the token function
 * gets the lease wait, 5 s, plus the Entra retry budget plus 5 s for AWS calls; the admin function 10 s). Each
 * local invocation gets a Lambda context with that much time, so local mode has the deployed deadlines.
 */
function functionTimeoutMs(fn: FunctionName): number {
  if (fn === 'admin') return 10_000;
  return 5000 + Number(process.env.TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS ?? 12_000) + 5000;
}

/** API Gateway's own payload limit is 10 MB; the handlers refuse much less (64 KiB) with a 413. */
const MAX_REQUEST_BYTES = 10 * 1024 * 1024;

function log(message: string): void {
  process.stderr.write(`[token-broker] ${message}\n`);
}

async function listen(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(port, host, () => res());
  });
  return (server.address() as AddressInfo).port;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((res, rej) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) {
        rej(new PayloadTooLargeError(`request body is larger than ${MAX_REQUEST_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => res(Buffer.concat(chunks)));
    req.on('error', rej);
  });
}

function send(res: ServerResponse, result: APIGatewayProxyResult): void {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(result.headers ?? {})) headers[k] = String(v);
  for (const [k, v] of Object.entries(result.multiValueHeaders ?? {})) headers[k] = v.map(String);
  res.writeHead(result.statusCode, headers);
  res.end(result.isBase64Encoded ? Buffer.from(result.body, 'base64') : result.body);
}

async function main(): Promise<void> {
  // The seed's .env file, if any; variables already in the environment win.
  if (existsSync('.env')) process.loadEnvFile('.env');
  const host = process.env.HOST ?? '127.0.0.1';
  const port = Number(process.env.PORT ?? 3000);
  const dataDir = resolve(process.env.TOKEN_BROKER_DATA_DIR ?? '.token-broker');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });

  // Defaults for what the CDK stack would set; anything already in the environment wins.
  process.env.AWS_REGION ??= 'us-east-1';
  process.env.TOKEN_BROKER_SERVICES_TABLE ??= 'token-broker-services';
  process.env.TOKEN_BROKER_TOKEN_CACHE_TABLE ??= 'token-broker-tokens';
  process.env.TOKEN_BROKER_USER_GRANTS_TABLE ??= 'token-broker-user-grants';
  // The default redirect URI of the authorization code flow names this server (API Gateway's URL in AWS).
  process.env.TOKEN_BROKER_PUBLIC_BASE_URL ??= `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  process.env.POWERTOOLS_SERVICE_NAME ??= 'token-broker';
  if (!process.env.AWS_ACCESS_KEY_ID && !process.env.AWS_PROFILE) {
    // The local stores accept any signature; the SDK still needs credentials to sign with.
    process.env.AWS_ACCESS_KEY_ID = 'local';
    process.env.AWS_SECRET_ACCESS_KEY = 'local';
  }

  // Like API Gateway's IAM authorization when a local IAM file is given; open otherwise.
  const iamFile = process.env.TOKEN_BROKER_LOCAL_IAM;
  const iam = iamFile ? LocalIamPolicy.load(resolve(iamFile)) : undefined;

  const closers: Array<() => Promise<void>> = [];

  if (!process.env.AWS_ENDPOINT_URL_DYNAMODB) {
    const { default: dynalite } = await import('dynalite');
    const ddbPath = resolve(dataDir, 'dynamodb');
    mkdirSync(ddbPath, { recursive: true, mode: 0o700 });
    const ddb = dynalite({ path: ddbPath, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
    const ddbPort = await listen(ddb, 0, '127.0.0.1');
    process.env.AWS_ENDPOINT_URL_DYNAMODB = `http://127.0.0.1:${ddbPort}`;
    closers.push(() => new Promise((res) => ddb.close(() => res())));
    log(`embedded DynamoDB (dynalite) persisted in ${ddbPath}`);
  } else {
    log(`DynamoDB endpoint ${process.env.AWS_ENDPOINT_URL_DYNAMODB}`);
  }

  if (!process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER) {
    const secrets = await startSecretsManagerServer({ dataDir, region: process.env.AWS_REGION });
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = secrets.url;
    closers.push(() => secrets.close());
    log(`embedded Secrets Manager persisted in ${resolve(dataDir, 'secrets')}`);
  } else {
    log(`Secrets Manager endpoint ${process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER}`);
  }

  if (!process.env.AWS_ENDPOINT_URL_KMS) {
    const kms = await startKmsServer({ dataDir, region: process.env.AWS_REGION });
    process.env.AWS_ENDPOINT_URL_KMS = kms.url;
    closers.push(() => kms.close());
    log(`embedded KMS persisted in ${resolve(dataDir, 'kms')}`);
  }
  if (!process.env.AWS_ENDPOINT_URL_STS) {
    // Federated credentials: an embedded STS issues the web identity tokens and serves their OIDC discovery.
    const sts = await startStsServer({
      dataDir,
      region: process.env.AWS_REGION,
      roleArn: process.env.TOKEN_BROKER_LOCAL_ROLE_ARN ?? DEFAULT_LOCAL_ROLE_ARN,
    });
    process.env.AWS_ENDPOINT_URL_STS = sts.url;
    process.env.TOKEN_BROKER_FEDERATION_ISSUER ??= sts.issuer;
    process.env.TOKEN_BROKER_FEDERATION_SUBJECT ??= sts.roleArn;
    closers.push(() => sts.close());
    log(`embedded STS (web identity tokens) issuer ${sts.issuer}, role ${sts.roleArn}`);
  }
  // Cached tokens are sealed with a KMS key: locally, one the embedded (or configured) KMS endpoint holds. Setup
  // only (CreateKey, CreateTable): the handlers use their own clients (functions/aws-clients.ts).
  const kmsSetup = new KMSClient(awsClientOptions(AWS_CALL_LIMITS.kms));
  process.env.TOKEN_BROKER_TOKEN_KEY_ID ??= await ensureLocalKey(kmsSetup, LOCAL_KMS_KEY_ALIAS);
  kmsSetup.destroy();

  const dynamoDbSetup = new DynamoDBClient(awsClientOptions(AWS_CALL_LIMITS.dynamodb));
  await ensureTables(dynamoDbSetup, {
    servicesTable: process.env.TOKEN_BROKER_SERVICES_TABLE,
    tokenCacheTable: process.env.TOKEN_BROKER_TOKEN_CACHE_TABLE,
    userGrantsTable: process.env.TOKEN_BROKER_USER_GRANTS_TABLE,
  });
  dynamoDbSetup.destroy();

  const seed = seedServiceFromEnvironment(process.env);
  if (seed) {
    const { createRuntime } = await import('../functions/runtime');
    const outcome = await createRuntime().admin.declare(seed);
    log(`service "${String(seed.name)}" from AZURE_AD_* variables: ${outcome}`);
  }

  // Imported only now: the handlers read their environment at load time, like a Lambda cold start.
  const handlers: Record<FunctionName, Handler> = {
    token: (await import('../functions/token')).handler as unknown as Handler,
    admin: (await import('../functions/admin')).handler as unknown as Handler,
    delegated: (await import('../functions/delegated')).handler as unknown as Handler,
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://local');
    const method = (req.method ?? 'GET').toUpperCase();
    const query: Record<string, string[]> = {};
    for (const k of new Set(url.searchParams.keys())) query[k] = url.searchParams.getAll(k);
    try {
      const match = matchRoute(url.pathname);
      // The consent callback is the one route without IAM (lib/routes.ts `auth: 'none'`), as in API Gateway.
      const checked = iam !== undefined && match?.route.auth !== 'none';
      // API Gateway authorizes before it routes: with IAM checks on, the body is needed for the signature.
      let body = checked ? await readBody(req) : undefined;
      let identity: AuthorizedIdentity | undefined;
      if (iam && checked) {
        const decision = await authorizeRequest(iam, {
          method,
          path: url.pathname,
          query,
          headers: req.headers,
          body: body as Buffer,
        });
        if (!decision.allowed) return send(res, refusalResponse(decision.refusal, randomUUID()));
        identity = decision.identity;
      }
      if (!match) throw new NotFoundError(`no route for ${url.pathname}`);
      if (!match.route.methods.includes(method)) {
        throw new MethodNotAllowedError(
          `method ${method} is not allowed on ${match.route.resource}`,
          match.route.methods,
        );
      }
      body ??= await readBody(req);
      const event = buildProxyEvent({
        method,
        path: url.pathname,
        resource: match.route.resource,
        pathParameters: match.pathParameters,
        headers: req.headers as Record<string, string | string[] | undefined>,
        query,
        body: body.length > 0 ? body.toString('utf8') : null,
        sourceIp: req.socket.remoteAddress,
        identity,
        apiAccountId: iam?.account,
      });
      const fn = match.route.function;
      send(res, await handlers[fn](event, localLambdaContext(`token-broker-${fn}`, functionTimeoutMs(fn))));
    } catch (error) {
      send(res, errorResponse(error, 'local'));
    }
  });
  const boundPort = await listen(server, port, host);
  const mode = iam
    ? `IAM checks on: SigV4 for execute-api in ${iam.region}, ${iam.size} principal(s) from ${iamFile}`
    : 'open: no IAM checks; set TOKEN_BROKER_LOCAL_IAM=<file> to check SigV4 signatures and grants';
  console.log(`Token Broker listening on http://${host}:${boundPort} (${mode})`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: shutting down`);
    server.closeAllConnections();
    await new Promise<void>((res) => server.close(() => res()));
    for (const close of closers.reverse()) await close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((error: unknown) => {
  log(`failed to start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
