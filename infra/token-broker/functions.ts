import * as path from 'node:path';
import { Duration, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import type { Construct } from 'constructs';
import { DEFAULT_FLOW_SETTINGS } from '../../lib/client-credentials-flow';
import type { FunctionName } from '../../lib/routes';
import { ENTRA_FAILURES_METRIC } from './monitoring';
import {
  acknowledgeCrossStackNetwork,
  acknowledgeNoVpc,
  type BrokerNetwork,
  grantVpcAccess,
} from './network';
import type { BrokerPermissions } from './permissions';
import type { ResolvedBrokerProps } from './props';
import { type BrokerStorage, createLogGroup } from './storage';

/** The repository root: the handlers' entry files and the lock file esbuild resolves packages against. */
const PROJECT_ROOT = path.resolve(import.meta.dirname, '..', '..');

/**
 * How every handler is bundled (by the local esbuild; NodejsFunction falls back to Docker without it).
 * The AWS SDK is bundled rather than taken from the runtime. Measured with infra/measure-bundles.ts, both load
 * in about the same time (token handler: ~150 ms median either way), so bundling costs no cold start; it pins
 * the SDK to the lock file instead of whatever version the runtime ships, and the code that runs is exactly
 * the code the deploy-fidelity test ran.
 */
export const LAMBDA_BUNDLING: nodejs.BundlingOptions = {
  format: nodejs.OutputFormat.CJS,
  target: 'node24',
  minify: true,
  sourceMap: true,
  // Source maps are only for stack traces; the sources themselves would double the asset for nothing.
  sourcesContent: false,
  bundleAwsSDK: true,
  logLevel: nodejs.LogLevel.WARNING,
};

/**
 * Packages only the HTTPS proxy path loads (lib/entra-token-client.ts imports undici on the first proxied
 * request). A broker without `httpsProxy` leaves them out of its bundles: undici is about 540 KB, and measured with
 * infra/measure-bundles.ts it would add about 17% to the token handler's module load CPU for code that never runs.
 */
export const PROXY_ONLY_MODULES: readonly string[] = ['undici'];

/** The bundling of a broker's functions: {@link LAMBDA_BUNDLING}, without the proxy's packages unless it has one. */
export function lambdaBundling(httpsProxy: string | undefined): nodejs.BundlingOptions {
  return httpsProxy === undefined
    ? { ...LAMBDA_BUNDLING, externalModules: [...PROXY_ONLY_MODULES] }
    : LAMBDA_BUNDLING;
}

/**
 * Whether the functions start with `--enable-source-maps` (stack traces pointing into the TypeScript sources instead
 * of the minified bundle). Off, by measurement (`npm run bench`, bench/cold-start.ts, Node 24): the flag makes Node
 * read and parse the bundle's source map at every cold start (about 400 KB for the token bundle; 68 against 55 ms
 * of module load in the README's run), for stack traces that only 500s log. The maps are still built beside the
 * bundles, so a logged stack can be mapped offline.
 */
export const TOKEN_FUNCTION_SOURCE_MAPS = false;

/** Time the token function gets on top of its Entra time, for its DynamoDB and Secrets Manager calls. */
export const AWS_CALLS_ALLOWANCE = Duration.seconds(5);

/** Longest token function timeout the construct accepts: well under API Gateway's 29 s. */
export const MAX_TOKEN_FUNCTION_TIMEOUT = Duration.seconds(25);

/**
 * The token function's timeout for a retry budget: the longest a request can take is waiting for another
 * instance's refresh (the handler's lease wait), then asking Entra itself with retries, plus its AWS calls.
 */
export function tokenFunctionTimeout(entraRetryBudget: Duration): Duration {
  return Duration.millis(DEFAULT_FLOW_SETTINGS.leaseWaitMs).plus(entraRetryBudget).plus(AWS_CALLS_ALLOWANCE);
}

/** A function the construct bundles from functions/<name>.ts. */
export type BrokerFunctionName = FunctionName | 'refresh' | 'declare-services';
const FUNCTION_IDS: Record<BrokerFunctionName, string> = {
  token: 'Token',
  admin: 'Admin',
  refresh: 'Refresh',
  'declare-services': 'DeclareServices',
  delegated: 'Delegated',
};

/** What differs between the broker's functions; the rest (runtime, bundling, logs, role, network) is shared. */
export interface BrokerFunctionOptions {
  readonly description: string;
  readonly memorySize: number;
  readonly timeout: Duration;
  readonly environment: Record<string, string>;
  /** A role shared with another function (see credential-grants.ts); by default the function gets its own. */
  readonly role?: iam.Role;
}

/** What every function of the broker is built with. */
export interface FunctionContext {
  readonly props: ResolvedBrokerProps;
  readonly storage: BrokerStorage;
  readonly network?: BrokerNetwork;
}

/** The names and ARNs of the broker's own resources that the handlers are told about. */
export interface BrokerResourceNames {
  readonly servicesTableName: string;
  readonly tokenCacheTableName: string;
  readonly keyArn: string;
}

/** The environment every handler reads (functions/config.ts), wired to this broker's tables, key and settings. */
export function brokerEnvironment(
  props: ResolvedBrokerProps,
  resources: BrokerResourceNames,
): Record<string, string> {
  return {
    TOKEN_BROKER_SERVICES_TABLE: resources.servicesTableName,
    TOKEN_BROKER_TOKEN_CACHE_TABLE: resources.tokenCacheTableName,
    TOKEN_BROKER_SECRET_PREFIX: props.secretPrefix,
    TOKEN_BROKER_INSTANCE_ID: props.namePrefix,
    TOKEN_BROKER_SECRET_KMS_KEY_ID: resources.keyArn,
    TOKEN_BROKER_TOKEN_KEY_ID: resources.keyArn,
    TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: props.allowedAuthorityHosts.join(','),
    TOKEN_BROKER_ALLOWED_SECRET_ARNS: props.allowedSecretArns.join(','),
    TOKEN_BROKER_ENTRA_TIMEOUT_MS: String(props.entraTimeout.toMilliseconds()),
    TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS: String(props.entraRetryBudget.toMilliseconds()),
    POWERTOOLS_SERVICE_NAME: ENTRA_FAILURES_METRIC.service,
    POWERTOOLS_LOG_LEVEL: props.logLevel,
    ...(TOKEN_FUNCTION_SOURCE_MAPS ? { NODE_OPTIONS: '--enable-source-maps' } : {}),
    ...(props.httpsProxy !== undefined ? { HTTPS_PROXY: props.httpsProxy } : {}),
  };
}

/** The resource names of the broker's storage, for {@link brokerEnvironment}. */
export function resourceNamesOf(storage: BrokerStorage): BrokerResourceNames {
  return {
    servicesTableName: storage.servicesTable.tableName,
    tokenCacheTableName: storage.tokenCacheTable.tableName,
    keyArn: storage.key.keyArn,
  };
}

/**
 * One handler of functions/ as a Lambda function in `scope`, with its own log group (encrypted with the broker
 * key) and its own role (instead of AWSLambdaBasicExecutionRole: it may write to its own log group only), in the
 * broker's VPC when it has one.
 */
export function createBrokerFunction(
  scope: Construct,
  name: BrokerFunctionName,
  context: FunctionContext,
  options: BrokerFunctionOptions,
): nodejs.NodejsFunction {
  const { props, storage, network } = context;
  const id = FUNCTION_IDS[name];
  const logGroup = createLogGroup(scope, `${id}FunctionLogs`, props, storage.key);
  const shared = options.role !== undefined;
  const role =
    options.role ??
    new iam.Role(scope, `${id}FunctionRole`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Token Broker ${props.stage}: ${name} function`,
    });
  logGroup.grantWrite(role);
  if (network && !shared) grantVpcAccess(role);
  const fn = new nodejs.NodejsFunction(scope, `${id}Function`, {
    entry: path.join(PROJECT_ROOT, 'functions', `${name}.ts`),
    handler: 'handler',
    projectRoot: PROJECT_ROOT,
    depsLockFilePath: path.join(PROJECT_ROOT, 'package-lock.json'),
    runtime: lambda.Runtime.NODEJS_24_X,
    architecture: lambda.Architecture.ARM_64,
    description: options.description,
    memorySize: options.memorySize,
    timeout: options.timeout,
    role,
    logGroup,
    tracing: lambda.Tracing.ACTIVE,
    environment: options.environment,
    bundling: lambdaBundling(props.httpsProxy),
    ...(network ?? {}),
  });
  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level ' +
      'permissions (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsx-ray.html)' +
      (network
        ? '; in a VPC also the network interface actions Lambda needs to attach the function (those of ' +
          'AWSLambdaVPCAccessExecutionRole), whose interfaces do not exist before Lambda creates them.'
        : '.'),
  });
  if (network) acknowledgeCrossStackNetwork(fn, network);
  else acknowledgeNoVpc(fn);
  return fn;
}

/** The functions behind the API and the scheduled refresh. */
export interface BrokerFunctions {
  readonly tokenFunction: nodejs.NodejsFunction;
  readonly adminFunction: nodejs.NodejsFunction;
  /** The authorization code flow: authorize, the consent callback, user tokens, connected users. */
  readonly delegatedFunction: nodejs.NodejsFunction;
  readonly refreshFunction?: nodejs.NodejsFunction;
  readonly refreshRule?: events.Rule;
}

/**
 * The token and admin functions, and (unless disabled) the refresh function with its schedule, each granted the
 * table actions of the adapter calls it makes (lib/service-registry.ts, lib/token-cache.ts, lib/refresh-coordinator.ts)
 * and the secrets it reads or manages.
 */
export function createBrokerFunctions(
  scope: Construct,
  context: FunctionContext,
  permissions: BrokerPermissions,
): BrokerFunctions {
  const { props, storage } = context;
  const { servicesTable, tokenCacheTable } = storage;
  const common = { environment: brokerEnvironment(props, resourceNamesOf(storage)) };
  const tokenFunction = createBrokerFunction(scope, 'token', context, {
    ...common,
    description: 'Token Broker: serves, refreshes and clears Entra client-credentials tokens',
    memorySize: props.tokenFunctionMemorySize,
    timeout: tokenFunctionTimeout(props.entraRetryBudget),
  });
  const adminFunction = createBrokerFunction(scope, 'admin', context, {
    ...common,
    description: 'Token Broker: registers and inspects services (system/service routes)',
    memorySize: props.adminFunctionMemorySize,
    timeout: Duration.seconds(10),
  });

  // The token function releases its refresh lease with DeleteItem; the admin function clears a changed or
  // deleted service's tokens (Query, BatchWriteItem).
  permissions.grantTableAccess(tokenFunction, [
    { table: servicesTable, actions: ['dynamodb:GetItem'] },
    {
      table: tokenCacheTable,
      actions: [
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        // touch(): records last_used_at, which the scheduled refresh reads to skip unused tokens.
        'dynamodb:UpdateItem',
        'dynamodb:DeleteItem',
        'dynamodb:Query',
        'dynamodb:BatchWriteItem',
      ],
    },
  ]);
  permissions.grantTableAccess(adminFunction, [
    {
      table: servicesTable,
      actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem', 'dynamodb:Scan'],
    },
    { table: tokenCacheTable, actions: ['dynamodb:Query', 'dynamodb:BatchWriteItem'] },
  ]);
  permissions.grantSecretRead(tokenFunction);
  permissions.grantTokenSealing(tokenFunction);
  permissions.grantSecretAdministration(adminFunction);
  const delegatedFunction = createDelegatedFunction(scope, context, permissions, common);

  const refresh = props.scheduledRefresh ?? {};
  if (!(refresh.enabled ?? true)) return { tokenFunction, adminFunction, delegatedFunction };
  const interval = refresh.interval ?? Duration.minutes(5);
  const refreshFunction = createBrokerFunction(scope, 'refresh', context, {
    ...common,
    description: 'Token Broker: refreshes cached tokens in use before they reach their refresh point',
    // Federated services: STS names the caller's role as the token's subject, and the app registration trusts one.
    role: props.federation ? (tokenFunction.role as iam.Role) : undefined,
    memorySize: props.tokenFunctionMemorySize,
    // Services are refreshed one after another, each within the Entra retry budget.
    timeout: Duration.minutes(5),
    environment: {
      ...common.environment,
      // Tokens reaching their refresh point before the next run, plus a minute of slack.
      TOKEN_BROKER_REFRESH_HORIZON_MS: String(interval.plus(Duration.minutes(1)).toMilliseconds()),
    },
  });
  // lib/service-registry.ts list() and get(); lib/token-cache.ts get/put/touch; lib/refresh-coordinator.ts.
  permissions.grantTableAccess(refreshFunction, [
    { table: servicesTable, actions: ['dynamodb:Scan', 'dynamodb:GetItem'] },
    {
      table: tokenCacheTable,
      actions: [
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:UpdateItem',
        'dynamodb:DeleteItem',
        'dynamodb:Query',
      ],
    },
  ]);
  permissions.grantSecretRead(refreshFunction);
  permissions.grantTokenSealing(refreshFunction);
  const refreshRule = new events.Rule(scope, 'RefreshSchedule', {
    description: `Token Broker (${props.stage}): scheduled token refresh`,
    schedule: events.Schedule.rate(interval),
    targets: [new targets.LambdaFunction(refreshFunction, { retryAttempts: 0 })],
  });
  return { tokenFunction, adminFunction, delegatedFunction, refreshFunction, refreshRule };
}

/**
 * The authorization code flow's function (functions/delegated.ts), with the table actions of its adapters
 * (lib/authorization-code/user-grants.ts, consent-states.ts; the token cache and its lease for delegated tokens).
 */
function createDelegatedFunction(
  scope: Construct,
  context: FunctionContext,
  permissions: BrokerPermissions,
  common: Pick<BrokerFunctionOptions, 'environment'>,
): nodejs.NodejsFunction {
  const { props, storage } = context;
  const fn = createBrokerFunction(scope, 'delegated', context, {
    environment: { ...common.environment, TOKEN_BROKER_USER_GRANTS_TABLE: storage.userGrantsTable.tableName },
    description: 'Token Broker: authorization code flow (consent, callback, delegated user tokens)',
    memorySize: props.tokenFunctionMemorySize,
    timeout: tokenFunctionTimeout(props.entraRetryBudget),
  });
  permissions.grantTableAccess(fn, [
    { table: storage.servicesTable, actions: ['dynamodb:GetItem'] },
    {
      table: storage.tokenCacheTable,
      actions: [
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:DeleteItem',
        'dynamodb:Query',
        'dynamodb:BatchWriteItem',
      ],
    },
    {
      table: storage.userGrantsTable,
      actions: [
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:UpdateItem',
        'dynamodb:DeleteItem',
        'dynamodb:Query',
      ],
    },
  ]);
  permissions.grantSecretRead(fn);
  permissions.grantTokenSealing(fn);
  permissions.grantUserSecretSealing(fn);
  return fn;
}
