import * as path from 'node:path';
import {
  ArnFormat,
  Aws,
  type CfnElement,
  CustomResource,
  Duration,
  RemovalPolicy,
  Stack,
  Token,
  Validations,
} from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { DEFAULT_FLOW_SETTINGS } from '../lib/client-credentials-flow';
import {
  adminRoutes,
  apiDocsRoutes,
  type ExecuteApiRoute,
  executeApiTail,
  tokenRoutes,
} from '../lib/execute-api-grants';
import { SECURITY_HEADERS } from '../lib/http';
import { type BrokerMetric, METRICS_NAMESPACE } from '../lib/metrics';
import { type FunctionName, ROUTES } from '../lib/routes';
import { SERVICES_TABLE, TOKEN_CACHE_TABLE } from '../lib/tables';
import { TOKEN_SEAL_PURPOSE } from '../lib/token-encryption';

/** The repository root: the handlers' entry files and the lock file esbuild resolves packages against. */
const PROJECT_ROOT = path.resolve(import.meta.dirname, '..');

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
 * Whether the functions start with `--enable-source-maps` (stack traces pointing into the TypeScript sources instead
 * of the minified bundle). Off, by measurement (`npm run bench`, bench/cold-start.ts, Node 24): the flag makes Node
 * read and parse the bundle's 1.8 MB source map at every cold start, about a quarter of the token handler's module
 * load CPU, for stack traces that only 500s log. The maps are still built beside the bundles, so a logged stack can
 * be mapped offline.
 */
export const TOKEN_FUNCTION_SOURCE_MAPS = false;

/** The CloudWatch metric the handlers emit (EMF) each time Entra fails a token request. */
export const ENTRA_FAILURES_METRIC = {
  namespace: METRICS_NAMESPACE,
  metricName: 'EntraFailures',
  /** The `service` dimension: the Powertools service name the handlers run under. */
  service: 'token-broker',
} as const;

/** Log levels of the handlers' Powertools logger. */
export type BrokerLogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';

/** Where the API can be reached from. */
export type BrokerEndpointType = 'REGIONAL' | 'PRIVATE';

/** Scheduled refresh of cached tokens that are in use and near their refresh point (functions/refresh.ts). */
export interface ScheduledRefreshOptions {
  /**
   * Whether to create the refresh function and its EventBridge schedule.
   * @default true
   */
  readonly enabled?: boolean;
  /**
   * How often the refresh runs (whole minutes, at least 1). The function refreshes tokens reaching their refresh
   * point within this interval plus one minute (TOKEN_BROKER_REFRESH_HORIZON_MS).
   * @default Duration.minutes(5)
   */
  readonly interval?: Duration;
}

/** A service declared in code (configuration as code); always references an existing secret by ARN. */
export interface DeclaredService {
  /** Service name: `^[a-z][a-z0-9_-]{1,63}$`. */
  readonly name: string;
  /** @default - the name */
  readonly label?: string;
  /** @default '' */
  readonly description?: string;
  /** @default true */
  readonly isActive?: boolean;
  /** Entra application (client) id. */
  readonly clientId: string;
  /** Entra tenant id. */
  readonly tenantId: string;
  /**
   * ARN of an existing secret holding the client secret: named under `secretPrefix`, or listed in
   * `allowedSecretArns`.
   */
  readonly clientSecretArn: string;
  /** Space-separated scopes, each `<resource>/.default`. @default - the API's default scopes */
  readonly scopes?: string;
  /** @default - the Microsoft global cloud */
  readonly authorityUrl?: string;
  /** @default 'client_credentials' */
  readonly grantType?: 'client_credentials' | 'authorization_code';
}

/** Properties of {@link TokenBroker}. Every one is optional; the defaults give a regional, IAM-only API. */
export interface TokenBrokerProps {
  /**
   * Deployment stage (`dev`, `prod`, ...): the API Gateway stage name and part of the names the broker
   * chooses (API name, KMS alias, secret prefix, alarm names), so brokers of two stages can share an account.
   * Lowercase letter first, then lowercase letters, digits or hyphens; at most 20 characters.
   * @default 'dev'
   */
  readonly stage?: string;
  /**
   * Prefix of the physical names the broker chooses (API name, KMS alias, alarm names).
   * @default `token-broker-${stage}`
   */
  readonly namePrefix?: string;
  /**
   * Secrets Manager name prefix of the service secrets (must end with `/`). The token function may only read,
   * and the admin function only create, update and delete, secrets under this prefix.
   * @default `token-broker/${stage}/services/`
   */
  readonly secretPrefix?: string;
  /**
   * `REGIONAL`: a public regional endpoint, still IAM-authorized on every method. `PRIVATE`: reachable only
   * through the interface VPC endpoints for execute-api given in `vpcEndpoints`.
   * @default 'REGIONAL'
   */
  readonly endpointType?: BrokerEndpointType;
  /**
   * Interface VPC endpoints (service `execute-api`) of a PRIVATE API: associated with the API, and the only
   * endpoints the resource policy lets requests through (together with `allowedVpcEndpoints`).
   * Required when `endpointType` is PRIVATE; not allowed otherwise.
   */
  readonly vpcEndpoints?: ec2.IInterfaceVpcEndpoint[];
  /**
   * Stage-wide steady-state request rate, in requests per second. Callers are expected to hold a token for
   * its lifetime, so a broker sees a few requests per workload per hour.
   * @default 50
   */
  readonly throttlingRateLimit?: number;
  /**
   * Stage-wide burst capacity, in requests.
   * @default 100
   */
  readonly throttlingBurstLimit?: number;
  /**
   * Lets IAM principals of this AWS Organization (`o-...`) in other accounts call the API. They still need
   * an identity policy of their own allowing `execute-api:Invoke` on the routes (see `tokenRouteArns`).
   * @default - only principals of the broker's own account
   */
  readonly allowedOrganizationId?: string;
  /**
   * Lets IAM principals of these other AWS accounts call the API; each still needs an identity policy of its
   * own allowing `execute-api:Invoke` on the routes (see `tokenRouteArns`).
   * @default - only principals of the broker's own account
   */
  readonly allowedAccountIds?: string[];
  /**
   * Further VPC endpoint ids (`vpce-...`, for example in other accounts) through which a PRIVATE API may be
   * called; requests through any other endpoint are denied by the resource policy. PRIVATE APIs only.
   * @default - only the endpoints in `vpcEndpoints`
   */
  readonly allowedVpcEndpoints?: string[];
  /**
   * Source IP ranges (CIDR) a REGIONAL API accepts requests from; all others are denied by the resource
   * policy. Requests through a VPC endpoint carry no public source IP, so PRIVATE APIs restrict by endpoint.
   * @default - any source address (IAM authorization still applies)
   */
  readonly allowedSourceIps?: string[];
  /**
   * Extra authority hosts (`host` or `host:port`) the broker may send client secrets to, besides the
   * Microsoft clouds (for example a regional ESTS host). Becomes TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS.
   * @default - the Microsoft clouds only
   */
  readonly allowedAuthorityHosts?: string[];
  /**
   * Existing secrets outside `secretPrefix` that services may reference with `config.client_secret_arn`: full
   * secret ARNs (with Secrets Manager's 6-character suffix) or ARN prefixes ending in `*`. The token function
   * may read them and the admin function check that they exist; neither may change them.
   * Becomes TOKEN_BROKER_ALLOWED_SECRET_ARNS.
   * @default - only secrets under `secretPrefix`
   */
  readonly allowedSecretArns?: string[];
  /**
   * Customer-managed KMS keys (ARNs) that encrypt the secrets in `allowedSecretArns`; the token function may
   * decrypt with them through Secrets Manager. Not needed for Secrets Manager's AWS managed key.
   * @default - none
   */
  readonly allowedSecretKeyArns?: string[];
  /**
   * SNS topic that receives alarm and OK notifications.
   * @default - alarms are created without actions
   */
  readonly alarmTopic?: sns.ITopic;
  /**
   * Timeout of one token request to Entra (at least 1 s, at most `entraRetryBudget`).
   * Becomes TOKEN_BROKER_ENTRA_TIMEOUT_MS.
   * @default Duration.seconds(10)
   */
  readonly entraTimeout?: Duration;
  /**
   * Total time one token request may spend on Entra, retries and Retry-After waits included. The token
   * function's timeout is the handler's wait for another instance's refresh, plus this, plus
   * {@link TokenBroker.AWS_CALLS_ALLOWANCE}: the handler then always answers in the API's error shape itself
   * instead of being cut off by Lambda, and it must stay under API Gateway's 29 s integration timeout (the
   * construct refuses a budget that would take it past 25 s). Becomes TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS.
   * @default Duration.seconds(12)
   */
  readonly entraRetryBudget?: Duration;
  /**
   * Retention of the function logs and the API access logs.
   * @default logs.RetentionDays.ONE_YEAR
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Level of the handlers' Powertools logger (POWERTOOLS_LOG_LEVEL).
   * @default 'INFO'
   */
  readonly logLevel?: BrokerLogLevel;
  /**
   * What `cdk destroy` does with the stateful resources: the services table, the KMS key and the log groups.
   * RETAIN (the default) keeps them and turns on the services table's deletion protection; DESTROY (for
   * short-lived stages) deletes them, the key after KMS's 7-day waiting period. The token cache table is
   * always deleted: it holds nothing that Entra cannot issue again. Secrets are created at run time by the
   * admin function, so no removal policy reaches them: they stay until deleted through the API.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Memory of the token function, in MB. Lambda allots CPU in proportion (one vCPU at 1,769 MB), and the
   * handler is CPU-bound where it matters: infra/measure-bundles.ts measured 140-205 ms CPU to load the
   * bundle, 100-120 ms CPU for the first request, 5-6 ms CPU per cache hit (two signed GetItems) and a 115 MB
   * peak RSS on one full core. At 1,024 MB that is a cold start of about half a second and ~10 ms CPU per
   * cache hit; at 256 MB, about 2 s and ~40 ms.
   * @default 1024
   */
  readonly tokenFunctionMemorySize?: number;
  /**
   * Memory of the admin function, in MB: the same bundle size and peak RSS, called rarely, so a slower cold
   * start is acceptable.
   * @default 512
   */
  readonly adminFunctionMemorySize?: number;
  /**
   * ARN of a regional AWS WAFv2 web ACL to associate with the API stage.
   * @default - no web ACL
   */
  readonly webAclArn?: string;
  /**
   * API Gateway execution logging for all methods. Needs the account-wide API Gateway CloudWatch Logs role
   * (AWS::ApiGateway::Account), which a reusable construct must not own; set this only where it exists.
   * @default apigw.MethodLoggingLevel.OFF
   */
  readonly executionLogLevel?: apigw.MethodLoggingLevel;
  /**
   * Scheduled refresh: an EventBridge rule runs functions/refresh.ts every `interval`, so callers nearly always
   * hit the cache.
   * @default - enabled, every 5 minutes
   */
  readonly scheduledRefresh?: ScheduledRefreshOptions;
  /**
   * Services declared in code: a custom resource makes each exist as declared (create, or update when it
   * differs) on every deployment. Services removed from this list, or the whole list, are NOT deleted: like the
   * services table, declared services are retained; delete them through the API.
   * @default - none
   */
  readonly services?: DeclaredService[];
}

/** One function's access to one table: the DynamoDB actions its adapter sends. */
interface TableAccess {
  readonly table: dynamodb.ITable;
  readonly actions: readonly string[];
}

const STAGE_PATTERN = /^[a-z][a-z0-9-]{0,19}$/;
const SECRET_PREFIX_PATTERN = /^[A-Za-z0-9/_+=.@-]*\/$/;
const SECRET_ARN_PATTERN = /^arn:[a-z-]+:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+\*?$/;
/** A concrete secret ARN, as a declared service's `clientSecretArn` must be (no wildcard). */
const CONCRETE_SECRET_ARN_PATTERN =
  /^arn:[a-z-]+:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/;
const DECLARED_NAME_PATTERN = /^[a-z][a-z0-9_-]{1,63}$/;

/** A function the construct bundles from functions/<name>.ts. */
type BrokerFunctionName = FunctionName | 'refresh' | 'declare-services';
const FUNCTION_IDS: Record<BrokerFunctionName, string> = {
  token: 'Token',
  admin: 'Admin',
  refresh: 'Refresh',
  'declare-services': 'DeclareServices',
};

/** Runs a lib/execute-api-grants.ts builder, naming the construct in a refusal. */
function grantableRoutes(build: () => ExecuteApiRoute[]): ExecuteApiRoute[] {
  try {
    return build();
  } catch (error) {
    throw new Error(`TokenBroker: ${(error as Error).message}`, { cause: error });
  }
}

/** The JSON error body of the API, as API Gateway itself must send it too. */
function errorBody(code: number, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

/**
 * API Gateway's own errors, each with the status it answers with. Its error templates are not VTL: they can
 * substitute `$context` variables but cannot compute the status, so every type is listed with its code.
 */
const GATEWAY_ERRORS: ReadonlyArray<readonly [apigw.ResponseType, number, string?]> = [
  [apigw.ResponseType.ACCESS_DENIED, 403],
  [apigw.ResponseType.API_CONFIGURATION_ERROR, 500],
  [apigw.ResponseType.AUTHORIZER_CONFIGURATION_ERROR, 500],
  [apigw.ResponseType.AUTHORIZER_FAILURE, 500],
  [apigw.ResponseType.BAD_REQUEST_PARAMETERS, 400],
  [apigw.ResponseType.BAD_REQUEST_BODY, 400],
  [apigw.ResponseType.EXPIRED_TOKEN, 403],
  [apigw.ResponseType.INTEGRATION_FAILURE, 504],
  [apigw.ResponseType.INTEGRATION_TIMEOUT, 504],
  [apigw.ResponseType.INVALID_API_KEY, 403],
  [apigw.ResponseType.INVALID_SIGNATURE, 403],
  // Every path and method has a method (see addRoutes), so this only answers requests that are not signed.
  [
    apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
    403,
    'missing authentication token: sign the request with AWS Signature Version 4 for the execute-api service',
  ],
  [apigw.ResponseType.QUOTA_EXCEEDED, 429],
  [apigw.ResponseType.REQUEST_TOO_LARGE, 413],
  [apigw.ResponseType.RESOURCE_NOT_FOUND, 404],
  [apigw.ResponseType.THROTTLED, 429],
  [apigw.ResponseType.UNAUTHORIZED, 401],
  [apigw.ResponseType.UNSUPPORTED_MEDIA_TYPE, 415],
  [apigw.ResponseType.WAF_FILTERED, 403],
];

/**
 * Token Broker on AWS: a REST API with IAM authorization on every method, one Lambda function per handler
 * (token and admin), the services and token cache tables, a customer-managed KMS key for the tables and the
 * service secrets, and alarms. Callers get access per service with {@link grantTokenAccess}; administrators
 * with {@link grantAdmin}.
 */
export class TokenBroker extends Construct {
  /** Time the token function gets on top of its Entra time, for its DynamoDB and Secrets Manager calls. */
  static readonly AWS_CALLS_ALLOWANCE = Duration.seconds(5);
  /** Longest token function timeout the construct accepts: well under API Gateway's 29 s. */
  static readonly MAX_TOKEN_FUNCTION_TIMEOUT = Duration.seconds(25);

  /**
   * The token function's timeout for a retry budget: the longest a request can take is waiting for another
   * instance's refresh (the handler's lease wait), then asking Entra itself with retries, plus its AWS calls.
   */
  static tokenFunctionTimeout(entraRetryBudget: Duration): Duration {
    return Duration.millis(DEFAULT_FLOW_SETTINGS.leaseWaitMs)
      .plus(entraRetryBudget)
      .plus(TokenBroker.AWS_CALLS_ALLOWANCE);
  }

  readonly stage: string;
  readonly namePrefix: string;
  readonly secretPrefix: string;
  readonly key: kms.Key;
  readonly servicesTable: dynamodb.Table;
  readonly tokenCacheTable: dynamodb.Table;
  readonly tokenFunction: nodejs.NodejsFunction;
  readonly adminFunction: nodejs.NodejsFunction;
  /** The scheduled refresh function; undefined when scheduled refresh is disabled. */
  readonly refreshFunction?: nodejs.NodejsFunction;
  /** The EventBridge rule running {@link refreshFunction}. */
  readonly refreshRule?: events.Rule;
  /** The custom resource declaring `services`; undefined without declared services. */
  readonly declaredServices?: CustomResource;
  /** The onEvent handler of {@link declaredServices}. */
  readonly declareServicesFunction?: nodejs.NodejsFunction;
  readonly api: apigw.RestApi;
  readonly accessLogGroup: logs.LogGroup;
  readonly alarms: cloudwatch.Alarm[] = [];
  /** CloudWatch dashboard: API, functions, cache outcomes, Entra traffic and latency, leases, degradations. */
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: TokenBrokerProps = {}) {
    super(scope, id);
    // Refuse bad props before anything is built (bundling the functions takes a while).
    validateProps(props);
    this.stage = props.stage ?? 'dev';
    this.namePrefix = props.namePrefix ?? `token-broker-${this.stage}`;
    this.secretPrefix = props.secretPrefix ?? `token-broker/${this.stage}/services/`;
    const entraTimeout = props.entraTimeout ?? Duration.seconds(10);
    const entraRetryBudget = props.entraRetryBudget ?? Duration.seconds(12);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;

    this.key = new kms.Key(this, 'Key', {
      description: `Token Broker (${this.stage}): DynamoDB tables and service secrets`,
      alias: `alias/${this.namePrefix}`,
      enableKeyRotation: true,
      removalPolicy,
      pendingWindow: Duration.days(7),
    });

    this.servicesTable = new dynamodb.Table(this, 'ServicesTable', {
      partitionKey: { name: SERVICES_TABLE.partitionKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.key,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: removalPolicy === RemovalPolicy.RETAIN,
      removalPolicy,
    });

    this.tokenCacheTable = new dynamodb.Table(this, 'TokenCacheTable', {
      partitionKey: { name: TOKEN_CACHE_TABLE.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: TOKEN_CACHE_TABLE.sortKey, type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: TOKEN_CACHE_TABLE.ttlAttribute,
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.key,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    Validations.of(this.tokenCacheTable).acknowledge({
      id: 'AwsSolutions-DDB3',
      reason:
        'The token cache holds only access tokens that Entra issues again on a miss; point-in-time recovery would ' +
        'restore nothing of value and would keep copies of live tokens for 35 days.',
    });

    const environment: Record<string, string> = {
      TOKEN_BROKER_SERVICES_TABLE: this.servicesTable.tableName,
      TOKEN_BROKER_TOKEN_CACHE_TABLE: this.tokenCacheTable.tableName,
      TOKEN_BROKER_SECRET_PREFIX: this.secretPrefix,
      TOKEN_BROKER_SECRET_KMS_KEY_ID: this.key.keyArn,
      TOKEN_BROKER_TOKEN_KEY_ID: this.key.keyArn,
      TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: (props.allowedAuthorityHosts ?? []).join(','),
      TOKEN_BROKER_ALLOWED_SECRET_ARNS: (props.allowedSecretArns ?? []).join(','),
      TOKEN_BROKER_ENTRA_TIMEOUT_MS: String(entraTimeout.toMilliseconds()),
      TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS: String(entraRetryBudget.toMilliseconds()),
      POWERTOOLS_SERVICE_NAME: ENTRA_FAILURES_METRIC.service,
      POWERTOOLS_LOG_LEVEL: props.logLevel ?? 'INFO',
      ...(TOKEN_FUNCTION_SOURCE_MAPS ? { NODE_OPTIONS: '--enable-source-maps' } : {}),
    };

    this.tokenFunction = this.createFunction('token', {
      description: 'Token Broker: serves, refreshes and clears Entra client-credentials tokens',
      memorySize: props.tokenFunctionMemorySize ?? 1024,
      timeout: TokenBroker.tokenFunctionTimeout(entraRetryBudget),
      environment,
      logRetention,
      removalPolicy,
    });
    this.adminFunction = this.createFunction('admin', {
      description: 'Token Broker: registers and inspects services (system/service routes)',
      memorySize: props.adminFunctionMemorySize ?? 512,
      timeout: Duration.seconds(10),
      environment,
      logRetention,
      removalPolicy,
    });

    // Each function gets the table actions of the adapter calls it makes (lib/service-registry.ts,
    // lib/token-cache.ts, lib/refresh-lease.ts: the token function releases its refresh lease with DeleteItem).
    // The admin function clears a changed or deleted service's tokens (Query, BatchWriteItem).
    this.grantTableAccess(this.tokenFunction, [
      { table: this.servicesTable, actions: ['dynamodb:GetItem'] },
      {
        table: this.tokenCacheTable,
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
    this.grantTableAccess(this.adminFunction, [
      {
        table: this.servicesTable,
        actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem', 'dynamodb:Scan'],
      },
      { table: this.tokenCacheTable, actions: ['dynamodb:Query', 'dynamodb:BatchWriteItem'] },
    ]);
    this.grantSecretAccess(props.allowedSecretArns ?? [], props.allowedSecretKeyArns ?? []);

    const refresh = props.scheduledRefresh ?? {};
    if (refresh.enabled ?? true) {
      const interval = refresh.interval ?? Duration.minutes(5);
      const fn = this.createFunction('refresh', {
        description: 'Token Broker: refreshes cached tokens in use before they reach their refresh point',
        memorySize: props.tokenFunctionMemorySize ?? 1024,
        // Services are refreshed one after another, each within the Entra retry budget.
        timeout: Duration.minutes(5),
        environment: {
          ...environment,
          // Tokens reaching their refresh point before the next run, plus a minute of slack.
          TOKEN_BROKER_REFRESH_HORIZON_MS: String(interval.plus(Duration.minutes(1)).toMilliseconds()),
        },
        logRetention,
        removalPolicy,
      });
      // lib/service-registry.ts list() and get(); lib/token-cache.ts get/put/touch; lib/refresh-lease.ts.
      this.grantTableAccess(fn, [
        { table: this.servicesTable, actions: ['dynamodb:Scan', 'dynamodb:GetItem'] },
        {
          table: this.tokenCacheTable,
          actions: [
            'dynamodb:GetItem',
            'dynamodb:PutItem',
            'dynamodb:UpdateItem',
            'dynamodb:DeleteItem',
            'dynamodb:Query',
          ],
        },
      ]);
      this.grantSecretRead(fn, props.allowedSecretArns ?? [], props.allowedSecretKeyArns ?? []);
      this.grantTokenSealing(fn);
      this.refreshFunction = fn;
      this.refreshRule = new events.Rule(this, 'RefreshSchedule', {
        description: `Token Broker (${this.stage}): scheduled token refresh`,
        schedule: events.Schedule.rate(interval),
        targets: [new targets.LambdaFunction(fn, { retryAttempts: 0 })],
      });
    }

    if (props.services !== undefined && props.services.length > 0) {
      const fn = this.createFunction('declare-services', {
        description: 'Token Broker: makes the services declared in the CDK app exist as declared',
        memorySize: props.adminFunctionMemorySize ?? 512,
        timeout: Duration.minutes(2),
        environment,
        logRetention,
        removalPolicy,
      });
      this.declareServicesFunction = fn;
      this.declaredServices = this.declareServices(fn, props.services, logRetention, removalPolicy);
    }

    this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', { retention: logRetention, removalPolicy });
    this.api = this.createApi(props);
    // RestApi adds an "Endpoint" output to whatever stack holds it; outputs are the stack's choice (see stack.ts).
    this.api.node.tryRemoveChild('Endpoint');
    this.addRoutes();
    this.addGatewayResponses();
    if (props.webAclArn !== undefined) {
      new wafv2.CfnWebACLAssociation(this, 'WebAclAssociation', {
        resourceArn: this.api.deploymentStage.stageArn,
        webAclArn: props.webAclArn,
      });
    }
    this.acknowledgeApiFindings(props);
    this.createAlarms(props.alarmTopic);
    this.dashboard = this.createDashboard();
  }

  /** The URL of the API stage, ending with `/`; routes are under `api/v2/`. */
  get url(): string {
    return this.api.url;
  }

  /**
   * The execute-api ARNs of one service's token routes (GET, POST, DELETE `/api/v2/{service}/client_credentials`),
   * for identity policies in other accounts; in this account use {@link grantTokenAccess}.
   */
  tokenRouteArns(serviceName: string): string[] {
    // Also keeps IAM wildcards ("*", "?") out of the ARNs: a grant names exactly one service. A token could
    // resolve to anything at deploy time, so only literal names are accepted.
    if (Token.isUnresolved(serviceName)) {
      throw new Error('TokenBroker: a grant needs a literal service name, not a token');
    }
    return this.executeApiArns(grantableRoutes(() => tokenRoutes(serviceName)));
  }

  /** The execute-api ARNs of every route the admin function serves (service management and the API docs). */
  adminRouteArns(): string[] {
    return this.executeApiArns(adminRoutes());
  }

  /** The execute-api ARN of the OpenAPI document (`GET /api/v2/api_docs`). */
  apiDocsRouteArns(): string[] {
    return this.executeApiArns(apiDocsRoutes());
  }

  /**
   * Lets the grantee (a role of a workload in this account) get, refresh and clear tokens of exactly one
   * service: `execute-api:Invoke` on that service's client_credentials routes and nothing else.
   */
  grantTokenAccess(grantee: iam.IGrantable, serviceName: string): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: this.tokenRouteArns(serviceName),
    });
  }

  /** Lets the grantee read the OpenAPI document, for example a developer role or a documentation portal. */
  grantApiDocs(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: this.apiDocsRouteArns(),
    });
  }

  /**
   * Lets the grantee register, change, inspect and delete services (the system/service routes) and read the API
   * docs. For a grantee in this stack, the cdk-nag finding on the `{name}` wildcard is acknowledged with the reason.
   */
  grantAdmin(grantee: iam.IGrantable): iam.Grant {
    const grant = iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: this.adminRouteArns(),
    });
    const principal = grantee.grantPrincipal;
    const stack = Stack.of(this);
    if (Construct.isConstruct(principal) && Stack.of(principal) === stack) {
      // cdk-nag names a finding by the ARN with references flattened to <LogicalId>.
      const api = `<${stack.getLogicalId(this.api.node.defaultChild as CfnElement)}>`;
      const stage = `<${stack.getLogicalId(this.api.deploymentStage.node.defaultChild as CfnElement)}>`;
      for (const route of adminRoutes().filter((r) => r.path.includes('*'))) {
        Validations.of(principal).acknowledge({
          id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:${api}/${stage}/${executeApiTail(route)}]`,
          reason:
            'The wildcard stands for the {name} path parameter of the administration routes: one service name ' +
            '(names cannot contain "/"), so an administrator may manage every service and nothing else.',
        });
      }
    }
    return grant;
  }

  private executeApiArns(routes: readonly ExecuteApiRoute[]): string[] {
    return routes.map((r) => this.api.arnForExecuteApi(r.method, r.path, this.api.deploymentStage.stageName));
  }

  private createFunction(
    name: BrokerFunctionName,
    options: {
      description: string;
      memorySize: number;
      timeout: Duration;
      environment: Record<string, string>;
      logRetention: logs.RetentionDays;
      removalPolicy: RemovalPolicy;
    },
  ): nodejs.NodejsFunction {
    const id = FUNCTION_IDS[name];
    const logGroup = new logs.LogGroup(this, `${id}FunctionLogs`, {
      retention: options.logRetention,
      removalPolicy: options.removalPolicy,
    });
    // An own role instead of AWSLambdaBasicExecutionRole: it may write to its own log group only.
    const role = new iam.Role(this, `${id}FunctionRole`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Token Broker ${this.stage}: ${name} function`,
    });
    logGroup.grantWrite(role);
    const fn = new nodejs.NodejsFunction(this, `${id}Function`, {
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
      bundling: LAMBDA_BUNDLING,
    });
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level ' +
        'permissions (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsx-ray.html).',
    });
    return fn;
  }

  /**
   * lib/token-encryption.ts: the functions that write or read cached tokens seal and open them with data keys of
   * the broker key, only under the token cache's encryption context (so these rights open nothing else).
   */
  private grantTokenSealing(fn: lambda.Function): void {
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [this.key.keyArn],
        conditions: { StringEquals: { 'kms:EncryptionContext:purpose': TOKEN_SEAL_PURPOSE } },
      }),
    );
  }

  private grantTableAccess(fn: lambda.Function, access: readonly TableAccess[]): void {
    for (const { table, actions } of access) {
      fn.addToRolePolicy(new iam.PolicyStatement({ actions: [...actions], resources: [table.tableArn] }));
    }
    // DynamoDB uses the table key on the caller's behalf: the key actions CDK's own table grants use, spelled out,
    // and only through DynamoDB.
    const writes = access.some(({ actions }) => actions.some((a) => !/:(GetItem|Query|Scan)$/.test(a)));
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: [
          'kms:Decrypt',
          'kms:DescribeKey',
          ...(writes ? ['kms:Encrypt', 'kms:ReEncryptFrom', 'kms:ReEncryptTo', 'kms:GenerateDataKey'] : []),
        ],
        resources: [this.key.keyArn],
        conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${Aws.REGION}.amazonaws.com` } },
      }),
    );
  }

  /**
   * Secrets under the prefix are the broker's own: the admin function creates (with tags), deletes and checks
   * them, the token function reads them; neither ever writes a value into an existing secret (a new client
   * secret becomes a new secret). Referenced secrets (allowedSecretArns) may only be checked and read.
   */
  private grantSecretAccess(referenced: readonly string[], referencedKeyArns: readonly string[]): void {
    const managed = this.managedSecretsArn();
    this.grantSecretRead(this.tokenFunction, referenced, referencedKeyArns);
    this.grantTokenSealing(this.tokenFunction);

    const admin = this.adminFunction;
    admin.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:CreateSecret', 'secretsmanager:TagResource', 'secretsmanager:DeleteSecret'],
        resources: [managed],
      }),
    );
    admin.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:DescribeSecret'],
        resources: [managed, ...referenced],
      }),
    );
    // Secrets Manager needs both to encrypt a new secret with a customer-managed key.
    admin.addToRolePolicy(this.ownSecretKeyStatement(['kms:GenerateDataKey', 'kms:Decrypt']));
    this.acknowledgeSecretWildcards(admin.role as iam.Role, referenced);
  }

  /** ARN pattern of the broker's own secrets (under the prefix). */
  private managedSecretsArn(): string {
    return Stack.of(this).formatArn({
      service: 'secretsmanager',
      resource: 'secret',
      resourceName: `${this.secretPrefix}*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  }

  /** Secrets Manager uses the key with the caller's permissions; its encryption context names the secret. */
  private ownSecretKeyStatement(actions: string[]): iam.PolicyStatement {
    return new iam.PolicyStatement({
      actions,
      resources: [this.key.keyArn],
      conditions: {
        StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` },
        StringLike: { 'kms:EncryptionContext:SecretARN': this.managedSecretsArn() },
      },
    });
  }

  /** Read access to the service secrets (token and refresh functions): own ones and referenced ones. */
  private grantSecretRead(
    fn: lambda.Function,
    referenced: readonly string[],
    referencedKeyArns: readonly string[],
  ): void {
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue'],
        resources: [this.managedSecretsArn(), ...referenced],
      }),
    );
    fn.addToRolePolicy(this.ownSecretKeyStatement(['kms:Decrypt']));
    if (referencedKeyArns.length > 0) {
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['kms:Decrypt'],
          resources: [...referencedKeyArns],
          conditions: {
            StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` },
          },
        }),
      );
    }
    this.acknowledgeSecretWildcards(fn.role as iam.Role, referenced);
  }

  private acknowledgeSecretWildcards(role: iam.Role, referenced: readonly string[]): void {
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:${this.secretPrefix}*]`,
      reason:
        'Secrets are created at run time, one per registered service, so only their name prefix is known at ' +
        'deploy time; the wildcard is confined to the broker prefix (and Secrets Manager appends a random suffix).',
    });
    for (const arn of referenced.filter((a) => !Token.isUnresolved(a) && a.endsWith('*'))) {
      Validations.of(role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${arn}]`,
        reason:
          'An operator-listed prefix of existing secrets that services may reference (allowedSecretArns); ' +
          'they may only be read (token and refresh functions) and checked (admin function), never changed.',
      });
    }
  }

  /**
   * The custom resource that declares `services` through ServiceAdministration.declare() (functions/declare-services.ts).
   * Its role gets exactly what declare() does with an ARN-referencing body: read and write the service record
   * (GetItem, PutItem; DeleteItem to undo a create that failed), clear a changed service's tokens (Query,
   * BatchWriteItem), check that the referenced secrets exist (DescribeSecret on the declared ARNs) and delete a
   * previously managed secret a declaration replaces with an ARN (DeleteSecret under the prefix). It never
   * creates a secret: a declaration cannot carry a secret value.
   */
  private declareServices(
    fn: nodejs.NodejsFunction,
    services: readonly DeclaredService[],
    logRetention: logs.RetentionDays,
    removalPolicy: RemovalPolicy,
  ): CustomResource {
    this.grantTableAccess(fn, [
      { table: this.servicesTable, actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem'] },
      { table: this.tokenCacheTable, actions: ['dynamodb:Query', 'dynamodb:BatchWriteItem'] },
    ]);
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:DescribeSecret'],
        resources: [...new Set(services.map((s) => s.clientSecretArn))],
      }),
    );
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:DeleteSecret'],
        resources: [this.managedSecretsArn()],
      }),
    );
    this.acknowledgeSecretWildcards(fn.role as iam.Role, []);

    // The Provider framework's own function: an own role and log group instead of the managed
    // AWSLambdaBasicExecutionRole, so it may only write its own logs and invoke the handler.
    const frameworkLogs = new logs.LogGroup(this, 'DeclareServicesProviderLogs', {
      retention: logRetention,
      removalPolicy,
    });
    const frameworkRole = new iam.Role(this, 'DeclareServicesProviderRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Token Broker ${this.stage}: declared-services provider framework`,
    });
    frameworkLogs.grantWrite(frameworkRole);
    const provider = new cr.Provider(this, 'DeclareServicesProvider', {
      onEventHandler: fn,
      frameworkOnEventRole: frameworkRole,
      logGroup: frameworkLogs,
    });
    Validations.of(frameworkRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${Stack.of(this).getLogicalId(fn.node.defaultChild as CfnElement)}.Arn>:*]`,
      reason:
        'Granted by the CDK Provider framework (grantInvoke): the framework function may invoke the ' +
        'declare-services handler, any version or alias of it; the wildcard is confined to that one function.',
    });

    const body = services.map((s) => ({
      name: s.name,
      ...(s.label !== undefined ? { label: s.label } : {}),
      ...(s.description !== undefined ? { description: s.description } : {}),
      type: 'oauth_azure_ad',
      is_active: s.isActive ?? true,
      config: {
        client_id: s.clientId,
        tenant_id: s.tenantId,
        client_secret_arn: s.clientSecretArn,
        ...(s.scopes !== undefined ? { scopes: s.scopes } : {}),
        ...(s.authorityUrl !== undefined ? { authority_url: s.authorityUrl } : {}),
        ...(s.grantType !== undefined ? { grant_type: s.grantType } : {}),
      },
    }));
    // Declared services are retained when the resource is deleted (see functions/declare-services.ts).
    return new CustomResource(this, 'DeclaredServices', {
      serviceToken: provider.serviceToken,
      resourceType: 'Custom::TokenBrokerDeclaredServices',
      properties: { Services: JSON.stringify(body) },
    });
  }

  private createApi(props: TokenBrokerProps): apigw.RestApi {
    const endpointType = props.endpointType ?? 'REGIONAL';
    const vpcEndpoints = props.vpcEndpoints ?? [];
    const executionLogLevel = props.executionLogLevel ?? apigw.MethodLoggingLevel.OFF;

    return new apigw.RestApi(this, 'Api', {
      restApiName: this.namePrefix,
      description: `Token Broker (${this.stage}): Entra client-credentials tokens for AWS workloads`,
      endpointConfiguration: {
        types: [endpointType === 'PRIVATE' ? apigw.EndpointType.PRIVATE : apigw.EndpointType.REGIONAL],
        vpcEndpoints: vpcEndpoints.length > 0 ? vpcEndpoints : undefined,
      },
      policy: this.resourcePolicy(props, endpointType),
      cloudWatchRole: false,
      failOnWarnings: true,
      defaultMethodOptions: { authorizationType: apigw.AuthorizationType.IAM },
      deployOptions: {
        stageName: this.stage,
        throttlingRateLimit: props.throttlingRateLimit ?? 50,
        throttlingBurstLimit: props.throttlingBurstLimit ?? 100,
        tracingEnabled: true,
        loggingLevel: executionLogLevel,
        accessLogDestination: new apigw.LogGroupLogDestination(this.accessLogGroup),
        accessLogFormat: apigw.AccessLogFormat.custom(
          JSON.stringify({
            requestId: apigw.AccessLogField.contextRequestId(),
            extendedRequestId: apigw.AccessLogField.contextExtendedRequestId(),
            requestTime: apigw.AccessLogField.contextRequestTime(),
            httpMethod: apigw.AccessLogField.contextHttpMethod(),
            resourcePath: apigw.AccessLogField.contextResourcePath(),
            path: apigw.AccessLogField.contextPath(),
            status: apigw.AccessLogField.contextStatus(),
            protocol: apigw.AccessLogField.contextProtocol(),
            responseLength: apigw.AccessLogField.contextResponseLength(),
            responseLatency: apigw.AccessLogField.contextResponseLatency(),
            integrationLatency: apigw.AccessLogField.contextIntegrationLatency(),
            integrationStatus: apigw.AccessLogField.contextIntegrationStatus(),
            errorType: apigw.AccessLogField.contextErrorResponseType(),
            errorMessage: apigw.AccessLogField.contextErrorMessage(),
            sourceIp: apigw.AccessLogField.contextIdentitySourceIp(),
            callerAccountId: apigw.AccessLogField.contextIdentityAccountId(),
            userArn: apigw.AccessLogField.contextIdentityUserArn(),
            principalOrgId: apigw.AccessLogField.contextIdentityPrincipalOrgId(),
            vpceId: '$context.identity.vpceId',
            userAgent: apigw.AccessLogField.contextIdentityUserAgent(),
            xrayTraceId: apigw.AccessLogField.contextXrayTraceId(),
          }),
        ),
      },
    });
  }

  /**
   * Same-account callers are authorized by their identity policies alone (AWS_IAM). The resource policy, when
   * there is one, only lets chosen other accounts in (they need an identity policy too) and denies requests
   * from outside the allowed VPC endpoints or IP ranges. Nothing here allows a principal that its own identity
   * policies do not, so per-service grants keep meaning what they say.
   */
  private resourcePolicy(
    props: TokenBrokerProps,
    endpointType: BrokerEndpointType,
  ): iam.PolicyDocument | undefined {
    const statements: iam.PolicyStatement[] = [];
    const invoke = { actions: ['execute-api:Invoke'], resources: ['execute-api:/*'] };
    const accounts = props.allowedAccountIds ?? [];
    const vpceIds = [
      ...(props.vpcEndpoints ?? []).map((e) => e.vpcEndpointId),
      ...(props.allowedVpcEndpoints ?? []),
    ];
    const sourceIps = props.allowedSourceIps ?? [];
    const restricted =
      endpointType === 'PRIVATE' ||
      accounts.length > 0 ||
      props.allowedOrganizationId !== undefined ||
      sourceIps.length > 0;
    if (!restricted) return undefined;

    // Account principals delegate to the identity policies of that account; this one included.
    statements.push(
      new iam.PolicyStatement({
        ...invoke,
        sid: 'AllowAccounts',
        principals: [new iam.AccountRootPrincipal(), ...accounts.map((a) => new iam.AccountPrincipal(a))],
      }),
    );
    if (props.allowedOrganizationId !== undefined) {
      // Principal "*" would also let this account's principals in without an identity policy: exclude them.
      statements.push(
        new iam.PolicyStatement({
          ...invoke,
          sid: 'AllowOrganization',
          principals: [new iam.AnyPrincipal()],
          conditions: {
            StringEquals: { 'aws:PrincipalOrgID': props.allowedOrganizationId },
            StringNotEquals: { 'aws:PrincipalAccount': Aws.ACCOUNT_ID },
          },
        }),
      );
    }
    if (vpceIds.length > 0) {
      statements.push(
        new iam.PolicyStatement({
          ...invoke,
          sid: 'DenyOtherVpcEndpoints',
          effect: iam.Effect.DENY,
          principals: [new iam.AnyPrincipal()],
          conditions: { StringNotEquals: { 'aws:SourceVpce': vpceIds } },
        }),
      );
    }
    if (sourceIps.length > 0) {
      statements.push(
        new iam.PolicyStatement({
          ...invoke,
          sid: 'DenyOtherSourceIps',
          effect: iam.Effect.DENY,
          principals: [new iam.AnyPrincipal()],
          conditions: { NotIpAddress: { 'aws:SourceIp': sourceIps } },
        }),
      );
    }
    return new iam.PolicyDocument({ statements });
  }

  /**
   * Methods for every route in ROUTES, integrated with the function that serves it. Everything else is
   * answered by API Gateway itself in the API's error shape, also behind IAM: 405 for a route's other methods,
   * 404 for any other path (a `{proxy+}` catch-all plus ANY on the resources between root and the routes).
   */
  private addRoutes(): void {
    const integrations: Record<FunctionName, apigw.Integration> = {
      token: new apigw.LambdaIntegration(this.tokenFunction, { allowTestInvoke: false }),
      admin: new apigw.LambdaIntegration(this.adminFunction, { allowTestInvoke: false }),
    };
    const routePaths = new Set<string>();
    for (const route of ROUTES) {
      const resource = this.api.root.resourceForPath(route.resource);
      for (const method of route.methods) resource.addMethod(method, integrations[route.function]);
      const allow = route.methods.join(', ');
      resource.addMethod(
        'ANY',
        ...mockErrorMethod(405, `method not allowed here; allowed: ${allow}`, { Allow: allow }),
      );
      routePaths.add(route.resource);
    }
    const notFound = mockErrorMethod(404, 'no route matches this path');
    const between = new Set<string>(['/']);
    for (const route of ROUTES) {
      const segments = route.resource.split('/').filter((s) => s.length > 0);
      for (let i = 1; i < segments.length; i++) between.add(`/${segments.slice(0, i).join('/')}`);
    }
    for (const resourcePath of between) {
      if (routePaths.has(resourcePath)) continue;
      const resource = resourcePath === '/' ? this.api.root : this.api.root.resourceForPath(resourcePath);
      resource.addMethod('ANY', ...notFound);
    }
    this.api.root.addResource('{proxy+}').addMethod('ANY', ...notFound);
  }

  private addGatewayResponses(): void {
    const responseHeaders = Object.fromEntries(
      Object.entries(SECURITY_HEADERS)
        .filter(([name]) => name !== 'Content-Type')
        .map(([name, value]) => [name, `'${value}'`]),
    );
    const template = (code: number, message?: string): string =>
      `{"error":{"code":${code},"message":${message === undefined ? '$context.error.messageString' : JSON.stringify(message)},` +
      `"context":{"request_id":"$context.requestId"}}}`;
    for (const [type, code, message] of GATEWAY_ERRORS) {
      this.api.addGatewayResponse(`GatewayResponse${type.responseType}`, {
        type,
        statusCode: String(code),
        responseHeaders,
        templates: { 'application/json': template(code, message) },
      });
    }
    // Only reached by response types API Gateway adds later. Their status line stays right (a status on a
    // DEFAULT_* response would override every type's status), but the template cannot know the exact code.
    this.api.addGatewayResponse('GatewayResponseDEFAULT_4XX', {
      type: apigw.ResponseType.DEFAULT_4XX,
      responseHeaders,
      templates: { 'application/json': template(400) },
    });
    this.api.addGatewayResponse('GatewayResponseDEFAULT_5XX', {
      type: apigw.ResponseType.DEFAULT_5XX,
      responseHeaders,
      templates: { 'application/json': template(500) },
    });
  }

  private acknowledgeApiFindings(props: TokenBrokerProps): void {
    Validations.of(this.api).acknowledge(
      {
        id: 'AwsSolutions-APIG2',
        reason:
          'Requests are validated in the handlers with the same zod schemas that document the API; an API Gateway ' +
          'model would be a second schema that drifts. Unknown routes and methods are refused by API Gateway.',
      },
      {
        id: 'AwsSolutions-COG4',
        reason:
          'Callers are AWS workloads: every method uses AWS_IAM (SigV4) authorization, with per-service ' +
          'execute-api:Invoke grants. A Cognito user pool authorizer is for end users and does not apply.',
      },
    );
    if (props.webAclArn === undefined) {
      Validations.of(this.api).acknowledge({
        id: 'AwsSolutions-APIG3',
        reason:
          'Every method requires SigV4 (unsigned requests never reach a function) and the stage is throttled; ' +
          'a WAF web ACL can be associated with the webAclArn prop where the organisation runs one.',
      });
    }
    if ((props.executionLogLevel ?? apigw.MethodLoggingLevel.OFF) === apigw.MethodLoggingLevel.OFF) {
      Validations.of(this.api).acknowledge({
        id: 'AwsSolutions-APIG6',
        reason:
          'Execution logging needs the account-wide API Gateway CloudWatch role, which a reusable construct must ' +
          'not own; JSON access logs record every request, and executionLogLevel turns execution logs on where ' +
          'the account has the role.',
      });
    }
  }

  private createDashboard(): cloudwatch.Dashboard {
    const period = Duration.minutes(1);
    const broker = (metricName: BrokerMetric | 'EntraLatency', statistic = 'Sum') =>
      new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName,
        dimensionsMap: { service: ENTRA_FAILURES_METRIC.service },
        statistic,
        period,
      });
    const stage = this.api.deploymentStage;
    const functions = [
      this.tokenFunction,
      this.adminFunction,
      ...(this.refreshFunction ? [this.refreshFunction] : []),
    ];
    const graph = (title: string, left: cloudwatch.IMetric[], width = 8) =>
      new cloudwatch.GraphWidget({ title, left, width, height: 6 });
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { dashboardName: this.namePrefix });
    dashboard.addWidgets(
      graph('API requests and errors', [
        stage.metricCount({ period }),
        stage.metricClientError({ period }),
        stage.metricServerError({ period }),
      ]),
      graph('API latency (p50, p99)', [
        stage.metricLatency({ period, statistic: 'p50' }),
        stage.metricLatency({ period, statistic: 'p99' }),
      ]),
      graph('Cache outcomes', [
        broker('CacheHit'),
        broker('CacheMiss'),
        broker('CacheRefresh'),
        broker('RefreshAhead'),
      ]),
    );
    dashboard.addWidgets(
      graph('Entra requests, failures, retries', [
        broker('EntraRequests'),
        broker('EntraFailures'),
        broker('EntraRetries'),
        broker('RefreshAheadFailures'),
      ]),
      graph('Entra latency (p50, p99)', [broker('EntraLatency', 'p50'), broker('EntraLatency', 'p99')]),
      graph('Leases, cool-downs, degraded store', [
        broker('LeaseWaits'),
        broker('LeaseWaitTimeouts'),
        broker('CooldownRefusals'),
        broker('StoreDegraded'),
      ]),
    );
    dashboard.addWidgets(
      graph(
        'Function errors and throttles',
        functions.flatMap((fn) => [fn.metricErrors({ period }), fn.metricThrottles({ period })]),
        12,
      ),
      graph(
        'Function duration (p99)',
        functions.map((fn) => fn.metricDuration({ period, statistic: 'p99' })),
        12,
      ),
    );
    return dashboard;
  }

  private createAlarms(topic: sns.ITopic | undefined): void {
    const period = Duration.minutes(5);
    const stage = this.api.deploymentStage;
    const add = (id: string, name: string, props: cloudwatch.AlarmProps): void => {
      const alarm = new cloudwatch.Alarm(this, id, {
        alarmName: `${this.namePrefix}-${name}`,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...props,
      });
      if (topic) {
        alarm.addAlarmAction(new cloudwatchActions.SnsAction(topic));
        alarm.addOkAction(new cloudwatchActions.SnsAction(topic));
      }
      this.alarms.push(alarm);
    };

    add('Api5xxRateAlarm', 'api-5xx-rate', {
      alarmDescription: 'More than 5% of API requests failed with a 5xx (at least 10 requests in 5 minutes).',
      metric: new cloudwatch.MathExpression({
        expression: 'IF(requests >= 10, 100 * errors / requests, 0)',
        usingMetrics: {
          requests: stage.metricCount({ period, statistic: 'Sum' }),
          errors: stage.metricServerError({ period, statistic: 'Sum' }),
        },
        period,
        label: '5xx responses (%)',
      }),
      threshold: 5,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
    });
    for (const [id, fn] of [
      ['Token', this.tokenFunction],
      ['Admin', this.adminFunction],
    ] as const) {
      const name = id.toLowerCase();
      add(`${id}FunctionErrorsAlarm`, `${name}-function-errors`, {
        alarmDescription: `The ${name} function failed (unhandled error or timeout).`,
        metric: fn.metricErrors({ period, statistic: 'Sum' }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
      });
      add(`${id}FunctionThrottlesAlarm`, `${name}-function-throttles`, {
        alarmDescription: `Invocations of the ${name} function were throttled.`,
        metric: fn.metricThrottles({ period, statistic: 'Sum' }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
      });
    }
    if (this.refreshFunction) {
      // A failed run is retried by the next one; an error means every service failed to be listed.
      add('RefreshFunctionErrorsAlarm', 'refresh-function-errors', {
        alarmDescription: 'The scheduled refresh function failed (unhandled error or timeout).',
        metric: this.refreshFunction.metricErrors({ period, statistic: 'Sum' }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
      });
    }
    add('EntraFailuresAlarm', 'entra-failures', {
      alarmDescription: 'Entra failed at least 5 token requests in 5 minutes (errors, throttling, timeouts).',
      metric: new cloudwatch.Metric({
        namespace: ENTRA_FAILURES_METRIC.namespace,
        metricName: ENTRA_FAILURES_METRIC.metricName,
        dimensionsMap: { service: ENTRA_FAILURES_METRIC.service },
        statistic: 'Sum',
        period,
      }),
      threshold: 5,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
    });
  }
}

/** Throws naming the first prop that is out of range or contradicts another. */
function validateProps(props: TokenBrokerProps): void {
  const stage = props.stage ?? 'dev';
  if (!STAGE_PATTERN.test(stage))
    throw new Error(`TokenBroker: stage "${stage}" must match ${STAGE_PATTERN}`);
  const secretPrefix = props.secretPrefix ?? `token-broker/${stage}/services/`;
  if (!SECRET_PREFIX_PATTERN.test(secretPrefix)) {
    throw new Error(
      `TokenBroker: secretPrefix "${secretPrefix}" must end with "/" and match ${SECRET_PREFIX_PATTERN}`,
    );
  }
  const entraTimeoutMs = (props.entraTimeout ?? Duration.seconds(10)).toMilliseconds();
  const retryBudget = props.entraRetryBudget ?? Duration.seconds(12);
  if (entraTimeoutMs < 1000 || entraTimeoutMs > retryBudget.toMilliseconds()) {
    throw new Error('TokenBroker: entraTimeout must be at least 1 second and at most entraRetryBudget');
  }
  const timeout = TokenBroker.tokenFunctionTimeout(retryBudget);
  if (timeout.toMilliseconds() > TokenBroker.MAX_TOKEN_FUNCTION_TIMEOUT.toMilliseconds()) {
    throw new Error(
      `TokenBroker: entraRetryBudget gives the token function a ${timeout.toSeconds()} s timeout; at most ` +
        `${TokenBroker.MAX_TOKEN_FUNCTION_TIMEOUT.toSeconds()} s leaves room under API Gateway's 29 s`,
    );
  }
  for (const arn of props.allowedSecretArns ?? []) {
    // The handlers accept an exact ARN or a prefix ending in "*"; IAM would read any other "*" or "?" as a wildcard.
    if (!Token.isUnresolved(arn) && !SECRET_ARN_PATTERN.test(arn)) {
      throw new Error(
        `TokenBroker: allowedSecretArns entry "${arn}" must be a Secrets Manager secret ARN, or an ARN prefix ending in "*"`,
      );
    }
  }
  const interval = props.scheduledRefresh?.interval;
  if (interval !== undefined && !interval.isUnresolved()) {
    const minutes = interval.toMilliseconds() / 60_000;
    if (!Number.isInteger(minutes) || minutes < 1) {
      throw new Error('TokenBroker: scheduledRefresh.interval must be a whole number of minutes, at least 1');
    }
  }
  validateDeclaredServices(props, secretPrefix);
  const removal = props.removalPolicy ?? RemovalPolicy.RETAIN;
  if (removal !== RemovalPolicy.RETAIN && removal !== RemovalPolicy.DESTROY) {
    throw new Error('TokenBroker: removalPolicy must be RETAIN or DESTROY');
  }
  const isPrivate = props.endpointType === 'PRIVATE';
  const vpcEndpoints = props.vpcEndpoints ?? [];
  if (isPrivate && vpcEndpoints.length === 0) {
    throw new Error(
      'TokenBroker: a PRIVATE API needs at least one execute-api interface endpoint in vpcEndpoints',
    );
  }
  if (!isPrivate && (vpcEndpoints.length > 0 || (props.allowedVpcEndpoints ?? []).length > 0)) {
    throw new Error('TokenBroker: vpcEndpoints and allowedVpcEndpoints apply to PRIVATE APIs only');
  }
  if (isPrivate && (props.allowedSourceIps ?? []).length > 0) {
    throw new Error(
      'TokenBroker: allowedSourceIps applies to REGIONAL APIs; restrict a PRIVATE API by VPC endpoint',
    );
  }
  if (props.throttlingRateLimit !== undefined && !(props.throttlingRateLimit > 0)) {
    throw new Error('TokenBroker: throttlingRateLimit must be positive');
  }
  if (
    props.throttlingBurstLimit !== undefined &&
    !(Number.isInteger(props.throttlingBurstLimit) && props.throttlingBurstLimit > 0)
  ) {
    throw new Error('TokenBroker: throttlingBurstLimit must be a positive whole number');
  }
}

/**
 * Declared services: valid, distinct names, and secret ARNs the handlers will accept (mirrors
 * lib/secret-reference.ts): named under the secret prefix, or listed in allowedSecretArns.
 */
function validateDeclaredServices(props: TokenBrokerProps, secretPrefix: string): void {
  const seen = new Set<string>();
  const allowed = props.allowedSecretArns ?? [];
  for (const service of props.services ?? []) {
    const { name, clientSecretArn: arn } = service;
    if (Token.isUnresolved(name) || !DECLARED_NAME_PATTERN.test(name)) {
      throw new Error(`TokenBroker: declared service name "${name}" must match ${DECLARED_NAME_PATTERN}`);
    }
    if (seen.has(name)) throw new Error(`TokenBroker: service "${name}" is declared more than once`);
    seen.add(name);
    if (Token.isUnresolved(arn) || !CONCRETE_SECRET_ARN_PATTERN.test(arn)) {
      throw new Error(
        `TokenBroker: service "${name}": clientSecretArn "${arn}" must be a Secrets Manager secret ARN`,
      );
    }
    const secretName = arn.slice(arn.indexOf(':secret:') + ':secret:'.length);
    const listed = allowed.some((a) => (a.endsWith('*') ? arn.startsWith(a.slice(0, -1)) : a === arn));
    if (!secretName.startsWith(secretPrefix) && !listed) {
      throw new Error(
        `TokenBroker: service "${name}": clientSecretArn "${arn}" must name a secret under "${secretPrefix}" ` +
          'or be listed in allowedSecretArns',
      );
    }
  }
}

/** A MOCK integration and method options that answer `status` in the API's error shape. */
function mockErrorMethod(
  status: number,
  message: string,
  headers: Record<string, string> = {},
): [apigw.MockIntegration, apigw.MethodOptions] {
  // Content-Type comes from the response template's media type.
  const allHeaders = Object.fromEntries(
    Object.entries({ ...SECURITY_HEADERS, ...headers }).filter(([name]) => name !== 'Content-Type'),
  );
  const integration = new apigw.MockIntegration({
    // NEVER: the request body is not passed through, so the caller cannot choose the mock's answer.
    passthroughBehavior: apigw.PassthroughBehavior.NEVER,
    requestTemplates: { 'application/json': `{"statusCode": ${status}}` },
    integrationResponses: [
      {
        statusCode: String(status),
        responseTemplates: { 'application/json': errorBody(status, message) },
        responseParameters: Object.fromEntries(
          Object.entries(allHeaders).map(([name, value]) => [`method.response.header.${name}`, `'${value}'`]),
        ),
      },
    ],
  });
  const options: apigw.MethodOptions = {
    methodResponses: [
      {
        statusCode: String(status),
        responseParameters: Object.fromEntries(
          Object.keys(allHeaders).map((name) => [`method.response.header.${name}`, true]),
        ),
      },
    ],
  };
  return [integration, options];
}
