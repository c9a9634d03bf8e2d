import { CfnGuardValidator } from '@cdklabs/cdk-validator-cfnguard';
import { App, type AppProps, Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import type { MethodLoggingLevel } from 'aws-cdk-lib/aws-apigateway';
import { AwsSolutionsChecks } from 'cdk-nag';
import { TokenBrokerStack } from './stack';
import type { BrokerEndpointType, BrokerLogLevel } from './token-broker';

/**
 * Reads the app's context (`cdk.json` or `-c key=value`). Lists are comma-separated strings on the command
 * line, or JSON arrays in cdk.json.
 */
class ContextReader {
  constructor(private readonly app: App) {}

  string(key: string): string | undefined {
    const value: unknown = this.app.node.tryGetContext(key);
    if (value === undefined || value === null || value === '') return undefined;
    if (typeof value !== 'string') throw new Error(`context "${key}" must be a string`);
    return value.trim();
  }

  list(key: string): string[] | undefined {
    const value: unknown = this.app.node.tryGetContext(key);
    if (value === undefined || value === null || value === '') return undefined;
    const items = Array.isArray(value) ? value.map(String) : String(value).split(',');
    return items.map((item) => item.trim()).filter((item) => item.length > 0);
  }

  number(key: string): number | undefined {
    const value = this.string(key) ?? (this.app.node.tryGetContext(key) as number | undefined);
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isFinite(n)) throw new Error(`context "${key}" must be a number`);
    return n;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[]): T | undefined {
    const value = this.string(key);
    if (value === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(value)) {
      throw new Error(`context "${key}" must be one of ${allowed.join(', ')}`);
    }
    return value as T;
  }
}

/**
 * An app with the compliance checks every Token Broker synthesis runs: cdk-nag's AwsSolutions rules, and AWS
 * Control Tower's proactive controls as cfn-guard rules (@cdklabs/cdk-validator-cfnguard, run offline with the
 * cfn-guard binary it bundles). A finding of either that is not acknowledged in code (with its reason, through
 * `Validations.of(construct).acknowledge`) fails the synthesis.
 */
export function createCheckedApp(props: AppProps = {}): App {
  const app = new App(props);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app), new CfnGuardValidator());
  return app;
}

/**
 * Builds the Token Broker app from context, with cdk-nag's AwsSolutions checks registered (findings fail the
 * synth). Context keys:
 * - `stage` (default `dev`): stack `TokenBroker-<stage>`, API stage, names, secret prefix
 * - `allowedAuthorityHosts`: extra Entra authority hosts (`host` or `host:port`)
 * - `allowedSecretArns`, `allowedSecretKeyArns`: existing secrets services may reference, and their KMS keys
 * - `endpointType` (`REGIONAL` | `PRIVATE`) and `vpcEndpointIds` (execute-api endpoints of a PRIVATE API)
 * - `allowedOrganizationId`, `allowedAccountIds`, `allowedVpcEndpoints`, `allowedSourceIps`: resource policy
 * - `throttlingRateLimit`, `throttlingBurstLimit`, `entraTimeoutSeconds`, `entraRetryBudgetSeconds`,
 *   `logLevel`, `alarmTopicArn`, `webAclArn`, `executionLogLevel` (`OFF` | `ERROR` | `INFO`, default `ERROR`),
 *   `removalPolicy` (`retain` | `destroy`)
 * - `scheduledRefreshMinutes` (default 5): interval of the scheduled token refresh in whole minutes; 0 disables it
 * - `federationIssuer` (turns federated credentials on: the account's outbound web identity issuer URL),
 *   `federationAudiences`: audiences besides `api://AzureADTokenExchange`
 * - `vpcId` (looked up: needs the account and region, which the CLI sets from its credentials), `vpcSubnetIds`,
 *   `securityGroupIds`, `createVpcEndpoints` (`true` | `false`), `httpsProxy`: functions in a VPC
 *
 * The stack's environment is the CLI's (CDK_DEFAULT_ACCOUNT, CDK_DEFAULT_REGION); without them it is
 * environment-agnostic.
 */
export function createTokenBrokerApp(props: AppProps = {}): { app: App; stack: TokenBrokerStack } {
  const app = createCheckedApp(props);
  const context = new ContextReader(app);
  const stage = context.string('stage') ?? 'dev';
  const entraTimeoutSeconds = context.number('entraTimeoutSeconds');
  const entraRetryBudgetSeconds = context.number('entraRetryBudgetSeconds');
  const removal = context.oneOf('removalPolicy', ['retain', 'destroy'] as const);
  const scheduledRefreshMinutes = context.number('scheduledRefreshMinutes');
  if (
    scheduledRefreshMinutes !== undefined &&
    !(Number.isInteger(scheduledRefreshMinutes) && scheduledRefreshMinutes >= 0)
  ) {
    throw new Error('context "scheduledRefreshMinutes" must be a whole number of minutes (0 disables)');
  }

  const env = { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION };
  const vpcId = context.string('vpcId');
  if (vpcId !== undefined && (env.account === undefined || env.region === undefined)) {
    throw new Error(
      'context "vpcId" is looked up in the stack\'s account and region: run cdk with credentials for them ' +
        '(the CLI sets CDK_DEFAULT_ACCOUNT and CDK_DEFAULT_REGION)',
    );
  }
  const createVpcEndpoints = context.oneOf('createVpcEndpoints', ['true', 'false'] as const);
  const federationIssuer = context.string('federationIssuer');
  const federationAudiences = context.list('federationAudiences');
  if (federationAudiences !== undefined && federationIssuer === undefined) {
    throw new Error('context "federationAudiences" needs "federationIssuer" (which turns federation on)');
  }

  const stack = new TokenBrokerStack(app, `TokenBroker-${stage}`, {
    env,
    description: `Token Broker (${stage}): Microsoft Entra ID client-credentials tokens for AWS workloads`,
    vpcEndpointIds: context.list('vpcEndpointIds'),
    alarmTopicArn: context.string('alarmTopicArn'),
    vpcId,
    vpcSubnetIds: context.list('vpcSubnetIds'),
    securityGroupIds: context.list('securityGroupIds'),
    broker: {
      stage,
      allowedAuthorityHosts: context.list('allowedAuthorityHosts'),
      allowedSecretArns: context.list('allowedSecretArns'),
      allowedSecretKeyArns: context.list('allowedSecretKeyArns'),
      endpointType: context.oneOf<BrokerEndpointType>('endpointType', ['REGIONAL', 'PRIVATE']),
      allowedOrganizationId: context.string('allowedOrganizationId'),
      allowedAccountIds: context.list('allowedAccountIds'),
      allowedVpcEndpoints: context.list('allowedVpcEndpoints'),
      allowedSourceIps: context.list('allowedSourceIps'),
      throttlingRateLimit: context.number('throttlingRateLimit'),
      throttlingBurstLimit: context.number('throttlingBurstLimit'),
      entraTimeout: entraTimeoutSeconds === undefined ? undefined : Duration.seconds(entraTimeoutSeconds),
      entraRetryBudget:
        entraRetryBudgetSeconds === undefined ? undefined : Duration.seconds(entraRetryBudgetSeconds),
      logLevel: context.oneOf<BrokerLogLevel>('logLevel', ['DEBUG', 'INFO', 'WARN', 'ERROR']),
      webAclArn: context.string('webAclArn'),
      executionLogLevel: context.oneOf<`${MethodLoggingLevel}`>('executionLogLevel', [
        'OFF',
        'ERROR',
        'INFO',
      ]) as MethodLoggingLevel | undefined,
      removalPolicy:
        removal === 'destroy'
          ? RemovalPolicy.DESTROY
          : removal === 'retain'
            ? RemovalPolicy.RETAIN
            : undefined,
      createVpcEndpoints: createVpcEndpoints === undefined ? undefined : createVpcEndpoints === 'true',
      httpsProxy: context.string('httpsProxy'),
      federation:
        federationIssuer === undefined
          ? undefined
          : { issuer: federationIssuer, audiences: federationAudiences },
      scheduledRefresh:
        scheduledRefreshMinutes === undefined
          ? undefined
          : scheduledRefreshMinutes === 0
            ? { enabled: false }
            : { interval: Duration.minutes(scheduledRefreshMinutes) },
    },
  });

  return { app, stack };
}
