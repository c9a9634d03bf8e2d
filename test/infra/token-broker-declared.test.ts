/**
 * Configuration as code (`services`) and the scheduled refresh interval, on a broker built with the construct's
 * props directly (services are not context). One synthesis, cdk-nag included: a finding makes it throw.
 */
import { App, Duration, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { TokenBrokerStack } from '../../infra/stack';
import type { DeclaredService, TokenBrokerProps } from '../../infra/token-broker';
import { cdkJsonContext } from './synth';
import {
  allowedResourcesByAction,
  functionRoleId,
  logicalIdOf,
  resourcesOfType,
  roleStatements,
} from './template';

const ACCOUNT = '123456789012';
const OWN_SECRET = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:token-broker/dev/services/graph-AbCdEf`;
const SHARED_SECRETS = 'arn:aws:secretsmanager:eu-west-1:444455556666:secret:shared/entra/*';
const SHARED_SECRET = 'arn:aws:secretsmanager:eu-west-1:444455556666:secret:shared/entra/sharepoint-XyZ123';
const SERVICES: DeclaredService[] = [
  { name: 'graph', clientId: 'client-1', tenantId: 'tenant-1', clientSecretArn: OWN_SECRET },
  {
    name: 'sharepoint',
    label: 'SharePoint',
    description: 'SharePoint Online',
    isActive: false,
    clientId: 'client-2',
    tenantId: 'tenant-2',
    clientSecretArn: SHARED_SECRET,
    scopes: 'https://example.sharepoint.com/.default',
    authorityUrl: 'https://login.microsoftonline.com',
    grantType: 'client_credentials',
  },
];

function build(broker: TokenBrokerProps): { app: App; stack: TokenBrokerStack } {
  const app = new App({ context: cdkJsonContext() });
  const stack = new TokenBrokerStack(app, 'TokenBroker-dev', { broker });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack };
}

let stack: TokenBrokerStack;
let template: Template;

beforeAll(() => {
  const built = build({
    allowedSecretArns: [SHARED_SECRETS],
    scheduledRefresh: { interval: Duration.minutes(10) },
    services: SERVICES,
  });
  stack = built.stack;
  template = Template.fromJSON(built.app.synth().getStackByName(stack.stackName).template);
});

describe('scheduled refresh interval', () => {
  it('runs the refresh at the given rate, refreshing tokens due within the interval plus a minute', () => {
    const refreshId = logicalIdOf(
      stack,
      stack.broker.refreshFunction as NonNullable<typeof stack.broker.refreshFunction>,
    );

    const rules = Object.values(resourcesOfType(template, 'AWS::Events::Rule'));
    expect(rules).toHaveLength(1);
    expect(rules[0]?.Properties).toMatchObject({
      ScheduleExpression: 'rate(10 minutes)',
      Targets: [expect.objectContaining({ Arn: { 'Fn::GetAtt': [refreshId, 'Arn'] } })],
    });
    const fn = resourcesOfType(template, 'AWS::Lambda::Function')[refreshId];
    const env = (fn?.Properties.Environment ?? {}) as { Variables?: Record<string, unknown> };
    expect(env.Variables?.TOKEN_BROKER_REFRESH_HORIZON_MS).toBe(String(11 * 60_000));
  });
});

describe('declared services', () => {
  const declareId = () =>
    logicalIdOf(
      stack,
      stack.broker.declareServicesFunction as NonNullable<typeof stack.broker.declareServicesFunction>,
    );

  it('declares the services through a custom resource, in the API shape', () => {
    const resources = Object.values(resourcesOfType(template, 'Custom::TokenBrokerDeclaredServices'));

    expect(resources).toHaveLength(1);
    expect(JSON.parse(resources[0]?.Properties.Services as string)).toEqual([
      {
        name: 'graph',
        type: 'oauth_azure_ad',
        is_active: true,
        config: { client_id: 'client-1', tenant_id: 'tenant-1', client_secret_arn: OWN_SECRET },
      },
      {
        name: 'sharepoint',
        label: 'SharePoint',
        description: 'SharePoint Online',
        type: 'oauth_azure_ad',
        is_active: false,
        config: {
          client_id: 'client-2',
          tenant_id: 'tenant-2',
          client_secret_arn: SHARED_SECRET,
          scopes: 'https://example.sharepoint.com/.default',
          authority_url: 'https://login.microsoftonline.com',
          grant_type: 'client_credentials',
        },
      },
    ]);
  });

  it('gives the declaring function exactly what declare() needs', () => {
    const statements = roleStatements(template, functionRoleId(template, declareId()));
    const services = logicalIdOf(stack, stack.broker.servicesTable);
    const cache = logicalIdOf(stack, stack.broker.tokenCacheTable);

    expect(allowedResourcesByAction(statements, 'dynamodb')).toEqual({
      'dynamodb:GetItem': [`<${services}.Arn>`],
      'dynamodb:PutItem': [`<${services}.Arn>`],
      'dynamodb:DeleteItem': [`<${services}.Arn>`],
      'dynamodb:Query': [`<${cache}.Arn>`],
      'dynamodb:BatchWriteItem': [`<${cache}.Arn>`],
    });
    expect(allowedResourcesByAction(statements, 'secretsmanager')).toEqual({
      'secretsmanager:DescribeSecret': [OWN_SECRET, SHARED_SECRET].sort(),
      'secretsmanager:DeleteSecret': [
        'arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:token-broker/dev/services/*',
      ],
    });
  });

  it('refuses at synth a secret outside the prefix and allowedSecretArns, a bad name and a bad ARN', () => {
    const one =
      (service: Partial<DeclaredService>, extra: TokenBrokerProps = {}) =>
      () =>
        build({ ...extra, services: [{ ...(SERVICES[0] as DeclaredService), ...service }] });

    expect(one({ clientSecretArn: SHARED_SECRET })).toThrow(/under "token-broker\/dev\/services\/"/);
    expect(one({ name: 'Graph' })).toThrow(/name "Graph"/);
    expect(one({ clientSecretArn: `${SHARED_SECRETS}` }, { allowedSecretArns: [SHARED_SECRETS] })).toThrow(
      /must be a Secrets Manager secret ARN/,
    );
  });
});
