import { type CustomResource, Stack, Token, Validations } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import {
  adminRoutes,
  apiDocsRoutes,
  type ExecuteApiRoute,
  tokenRoutes,
  userTokenRoutes,
} from '../../lib/execute-api-grants';
import { createBrokerApi, executionLogGroupName } from './api';
import { grantCredentials } from './credential-grants';
import { createDeclaredServices } from './declared-services';
import {
  AWS_CALLS_ALLOWANCE,
  createBrokerFunctions,
  MAX_TOKEN_FUNCTION_TIMEOUT,
  tokenFunctionTimeout,
} from './functions';
import { createAlarms, createAlarmTopic, createDashboard } from './monitoring';
import { createNetwork } from './network';
import { asCdkNagRenders, BrokerPermissions } from './permissions';
import { resolveProps, type TokenBrokerProps } from './props';
import { allowLogsToUseKey, createStorage } from './storage';
import { validateProps } from './validate';

export { LAMBDA_BUNDLING, TOKEN_FUNCTION_SOURCE_MAPS } from './functions';
export { ENTRA_FAILURES_METRIC } from './monitoring';
export type {
  BrokerEndpointType,
  BrokerLogLevel,
  DeclaredService,
  FederationOptions,
  ScheduledRefreshOptions,
  TokenBrokerProps,
} from './props';

/**
 * Token Broker on AWS: a REST API with IAM authorization on every method, one Lambda function per handler
 * (token and admin), the services and token cache tables, a customer-managed KMS key for the tables and the
 * service secrets, and alarms. Callers get access per service with {@link grantTokenAccess} (or, to get tokens
 * only, {@link grantTokenReadAccess}); administrators with {@link grantAdmin}.
 *
 * Composed from builders that each take this construct as their scope (storage.ts, functions.ts, api.ts,
 * monitoring.ts, declared-services.ts), so every resource keeps its construct path and logical id.
 */
export class TokenBroker extends Construct {
  /** Time the token function gets on top of its Entra time, for its DynamoDB and Secrets Manager calls. */
  static readonly AWS_CALLS_ALLOWANCE = AWS_CALLS_ALLOWANCE;
  /** Longest token function timeout the construct accepts: well under API Gateway's 29 s. */
  static readonly MAX_TOKEN_FUNCTION_TIMEOUT = MAX_TOKEN_FUNCTION_TIMEOUT;
  /** See functions.ts {@link tokenFunctionTimeout}. */
  static readonly tokenFunctionTimeout = tokenFunctionTimeout;

  readonly stage: string;
  readonly namePrefix: string;
  readonly secretPrefix: string;
  readonly key: kms.Key;
  readonly servicesTable: dynamodb.Table;
  readonly tokenCacheTable: dynamodb.Table;
  /** Users' sealed refresh tokens and consent states (authorization code flow). */
  readonly userGrantsTable: dynamodb.Table;
  readonly tokenFunction: nodejs.NodejsFunction;
  readonly adminFunction: nodejs.NodejsFunction;
  /** Serves the authorization code flow's routes (authorize, sso, user_token, connected users). */
  readonly delegatedFunction: nodejs.NodejsFunction;
  /** The scheduled refresh function; undefined when scheduled refresh is disabled. */
  readonly refreshFunction?: nodejs.NodejsFunction;
  /** The EventBridge rule running {@link refreshFunction}. */
  readonly refreshRule?: events.Rule;
  /** The custom resource declaring `services`; undefined without declared services. */
  readonly declaredServices?: CustomResource;
  /** The onEvent handler of {@link declaredServices}. */
  readonly declareServicesFunction?: nodejs.NodejsFunction;
  /**
   * With `federation`: the ARN of the role the token and refresh functions share, which STS names as the subject of
   * their web identity tokens; the app registrations' federated credentials trust it.
   */
  readonly federationSubject?: string;
  /** With `federation`: the account's outbound web identity issuer (the prop). */
  readonly federationIssuer?: string;
  readonly api: apigw.RestApi;
  readonly accessLogGroup: logs.LogGroup;
  /** API Gateway's execution logs; undefined when `executionLogLevel` is OFF. */
  readonly executionLogGroup?: logs.LogGroup;
  /** The topic every alarm notifies: the `alarmTopic` prop, or the one the broker created. */
  readonly alarmTopic: sns.ITopic;
  readonly alarms: cloudwatch.Alarm[];
  /** CloudWatch dashboard: API, functions, cache outcomes, Entra traffic and latency, leases, degradations. */
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: TokenBrokerProps = {}) {
    super(scope, id);
    // Refuse bad props before anything is built (bundling the functions takes a while).
    validateProps(props);
    const resolved = resolveProps(props);
    this.stage = resolved.stage;
    this.namePrefix = resolved.namePrefix;
    this.secretPrefix = resolved.secretPrefix;

    const storage = createStorage(this, resolved);
    this.key = storage.key;
    this.servicesTable = storage.servicesTable;
    this.tokenCacheTable = storage.tokenCacheTable;
    this.userGrantsTable = storage.userGrantsTable;

    const permissions = new BrokerPermissions(this, storage, resolved);
    const context = { props: resolved, storage, network: createNetwork(this, resolved) };
    const functions = createBrokerFunctions(this, context, permissions);
    this.tokenFunction = functions.tokenFunction;
    this.adminFunction = functions.adminFunction;
    this.delegatedFunction = functions.delegatedFunction;
    this.refreshFunction = functions.refreshFunction;
    this.refreshRule = functions.refreshRule;
    this.federationSubject = grantCredentials(functions, resolved).federationSubject;
    this.federationIssuer = resolved.federation?.issuer;

    if (resolved.services !== undefined && resolved.services.length > 0) {
      const declared = createDeclaredServices(this, context, resolved.services, permissions);
      this.declaredServices = declared.declaredServices;
      this.declareServicesFunction = declared.declareServicesFunction;
    }

    const { api, accessLogGroup, executionLogGroup } = createBrokerApi(this, resolved, storage, functions);
    this.api = api;
    this.accessLogGroup = accessLogGroup;
    this.executionLogGroup = executionLogGroup;
    // Only these log groups (and this stack's) may use the key through CloudWatch Logs.
    allowLogsToUseKey(this.key, executionLogGroup ? [executionLogGroupName(api, this.stage)] : []);

    const monitored = { namePrefix: this.namePrefix, api, ...functions };
    this.alarmTopic = resolved.alarmTopic ?? createAlarmTopic(this, this.namePrefix, this.key);
    this.alarms = createAlarms(this, monitored, this.alarmTopic);
    this.dashboard = createDashboard(this, monitored);
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
    return this.executeApiArns(grantableRoutes(serviceName, () => tokenRoutes(serviceName)));
  }

  /**
   * The execute-api ARN of one service's token route for GET only (get a token; neither force a refresh nor clear
   * the cache), for identity policies in other accounts; in this account use {@link grantTokenReadAccess}.
   */
  tokenReadRouteArns(serviceName: string): string[] {
    return this.executeApiArns(
      grantableRoutes(serviceName, () => tokenRoutes(serviceName, { readOnly: true })),
    );
  }

  /**
   * The execute-api ARNs of one service's authorization code routes a workload calls (`GET authorize`,
   * `GET|DELETE user_token`); never the consent callback, which has no IAM.
   */
  userTokenRouteArns(serviceName: string): string[] {
    return this.executeApiArns(grantableRoutes(serviceName, () => userTokenRoutes(serviceName)));
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

  /**
   * Lets the grantee get tokens of exactly one service and nothing else: `execute-api:Invoke` on GET of that
   * service's client_credentials route. A consumer that only needs tokens cannot force refreshes (POST) nor clear
   * the cache for every caller of the service (DELETE).
   */
  grantTokenReadAccess(grantee: iam.IGrantable, serviceName: string): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: this.tokenReadRouteArns(serviceName),
    });
  }

  /**
   * Lets the grantee (a workload's role) start consents for its users and get or forget their delegated tokens for
   * exactly one service: `execute-api:Invoke` on that service's authorize and user_token routes and nothing else.
   */
  grantUserTokenAccess(grantee: iam.IGrantable, serviceName: string): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: this.userTokenRouteArns(serviceName),
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
      for (const route of adminRoutes().filter((r) => r.path.includes('*'))) {
        const arn = this.api.arnForExecuteApi(route.method, route.path, this.api.deploymentStage.stageName);
        Validations.of(principal).acknowledge({
          id: `AwsSolutions-IAM5[Resource::${asCdkNagRenders(this, arn)}]`,
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
}

/**
 * Runs a lib/execute-api-grants.ts builder, naming the construct in a refusal. A token could resolve to anything
 * at deploy time, so only literal service names are accepted; lib refuses IAM wildcards ("*", "?") and reserved
 * names, so a grant names exactly one service.
 */
function grantableRoutes(serviceName: string, build: () => ExecuteApiRoute[]): ExecuteApiRoute[] {
  if (Token.isUnresolved(serviceName)) {
    throw new Error('TokenBroker: a grant needs a literal service name, not a token');
  }
  try {
    return build();
  } catch (error) {
    throw new Error(`TokenBroker: ${(error as Error).message}`, { cause: error });
  }
}
