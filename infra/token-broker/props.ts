import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';

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

/**
 * Federated credentials (`credential_type: federated`): the token-fetching functions ask AWS STS for web identity
 * tokens of their role (IAM outbound identity federation) and send them to Entra as client assertions. The account
 * enables outbound federation once: `aws iam enable-outbound-web-identity-federation`.
 */
export interface FederationOptions {
  /**
   * The account's issuer URL, as `aws iam enable-outbound-web-identity-federation` (or
   * `aws iam get-outbound-web-identity-federation-info`) prints it, exactly as the tokens' `iss` claim has it (https,
   * no trailing slash). Becomes TOKEN_BROKER_FEDERATION_ISSUER: `GET /api/v2/system/federation` answers it.
   */
  readonly issuer: string;
  /**
   * Audiences besides `api://AzureADTokenExchange` that services may ask tokens for (`config.federation_audience`),
   * for example a national cloud's `api://AzureADTokenExchangeUSGov` or `api://AzureADTokenExchangeChina`. IAM lets
   * the functions get tokens for these audiences only.
   * @default - `api://AzureADTokenExchange` only
   */
  readonly audiences?: string[];
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
   * Lets IAM principals of this AWS Organization (`o-...`) in other accounts call the token routes. They still
   * need an identity policy of their own allowing `execute-api:Invoke` on the services they use (see
   * `tokenRouteArns`, `tokenReadRouteArns`). The admin routes are denied to every principal outside the broker's
   * own account, whatever its own policies allow.
   * @default - only principals of the broker's own account
   */
  readonly allowedOrganizationId?: string;
  /**
   * Lets IAM principals of these other AWS accounts call the token routes; each still needs an identity policy of
   * its own allowing `execute-api:Invoke` on the services it uses (see `tokenRouteArns`, `tokenReadRouteArns`).
   * The admin routes are denied to every principal outside the broker's own account, whatever its own policies
   * allow.
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
   * SNS topic that receives alarm and OK notifications. Without one, the broker creates a topic (encrypted with
   * its key, HTTPS only) and every alarm notifies it; subscribe to it after the deployment (the stack outputs its
   * ARN as `AlarmTopicArn`), for example `aws sns subscribe --topic-arn <arn> --protocol email
   * --notification-endpoint ops@example.com`.
   * @default - a topic the broker creates
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
   * API Gateway execution logging for all methods, to a log group the broker creates (encrypted with its key,
   * kept for `logRetention`). Never with data trace: request and response bodies carry tokens and secrets.
   * Needs the account-wide API Gateway CloudWatch Logs role (AWS::ApiGateway::Account, once per account and
   * region), which a reusable construct must not own: see the README's deploy section. OFF turns it off.
   * @default apigw.MethodLoggingLevel.ERROR
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
  /**
   * A VPC to run the functions in, in private subnets (`vpcSubnets`), reaching DynamoDB through a gateway endpoint
   * and Secrets Manager and KMS through interface endpoints (`createVpcEndpoints`). Entra is on the internet: the
   * subnets need a route to it, through a NAT gateway or through an HTTPS proxy (`httpsProxy`).
   * @default - the functions run outside any VPC (Lambda's own network, with internet access)
   */
  readonly vpc?: ec2.IVpc;
  /**
   * The subnets of `vpc` to place the functions (and the interface endpoints) in.
   * @default - the VPC's private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * Security groups of the functions in `vpc`.
   * @default - one security group, all outbound traffic allowed, no inbound
   */
  readonly securityGroups?: ec2.ISecurityGroup[];
  /**
   * Whether to create the VPC endpoints the functions need in `vpc`: a gateway endpoint for DynamoDB, interface
   * endpoints (private DNS) for Secrets Manager and KMS, open on 443 to the functions' security groups only. Turn
   * it off where the VPC already has them (for example shared endpoints of a landing zone).
   * @default true
   */
  readonly createVpcEndpoints?: boolean;
  /**
   * HTTPS proxy (`http://host:port`) for the requests to Entra, for functions in a VPC without a NAT gateway.
   * Becomes HTTPS_PROXY; only the Entra client uses it (AWS calls go through the VPC endpoints).
   * @default - no proxy
   */
  readonly httpsProxy?: string;
  /**
   * Turns on federated credentials (no secret anywhere): the token and refresh functions share one role, whose ARN
   * is the subject the app registrations trust (stack output `FederationSubject`), and may get STS web identity
   * tokens for Entra's audiences only; with `vpc`, an STS interface endpoint is created too.
   * @default - off: services cannot use `credential_type: federated`
   */
  readonly federation?: FederationOptions;
}

/** The props with every default filled in: what the builders read. */
export interface ResolvedBrokerProps extends TokenBrokerProps {
  readonly stage: string;
  readonly namePrefix: string;
  readonly secretPrefix: string;
  readonly endpointType: BrokerEndpointType;
  readonly entraTimeout: Duration;
  readonly entraRetryBudget: Duration;
  readonly removalPolicy: RemovalPolicy;
  readonly logRetention: logs.RetentionDays;
  readonly logLevel: BrokerLogLevel;
  readonly allowedAuthorityHosts: string[];
  readonly allowedSecretArns: string[];
  readonly allowedSecretKeyArns: string[];
  readonly tokenFunctionMemorySize: number;
  readonly adminFunctionMemorySize: number;
  readonly executionLogLevel: apigw.MethodLoggingLevel;
}

/** Fills in the defaults documented on {@link TokenBrokerProps}. */
export function resolveProps(props: TokenBrokerProps): ResolvedBrokerProps {
  const stage = props.stage ?? 'dev';
  return {
    ...props,
    stage,
    namePrefix: props.namePrefix ?? `token-broker-${stage}`,
    secretPrefix: props.secretPrefix ?? `token-broker/${stage}/services/`,
    endpointType: props.endpointType ?? 'REGIONAL',
    entraTimeout: props.entraTimeout ?? Duration.seconds(10),
    entraRetryBudget: props.entraRetryBudget ?? Duration.seconds(12),
    removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    logRetention: props.logRetention ?? logs.RetentionDays.ONE_YEAR,
    logLevel: props.logLevel ?? 'INFO',
    allowedAuthorityHosts: props.allowedAuthorityHosts ?? [],
    allowedSecretArns: props.allowedSecretArns ?? [],
    allowedSecretKeyArns: props.allowedSecretKeyArns ?? [],
    tokenFunctionMemorySize: props.tokenFunctionMemorySize ?? 1024,
    adminFunctionMemorySize: props.adminFunctionMemorySize ?? 512,
    executionLogLevel: props.executionLogLevel ?? apigw.MethodLoggingLevel.ERROR,
  };
}
