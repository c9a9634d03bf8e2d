/**
 * Configuration as code (`services`) and the scheduled refresh interval, on a broker built with the construct's
 * props directly (services are not context). One synthesis, cdk-nag included: a finding makes it throw. Props are
 * validated before anything is built, so a refused declaration never reaches the deployment.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import type { TokenBrokerStack } from '../../infra/stack';
import { type DeclaredService, TokenBroker, type TokenBrokerProps } from '../../infra/token-broker';
import { synthesizeBrokerProps } from './synth';
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
const CLIENT_1 = '11111111-1111-4111-8111-111111111111';
const CLIENT_2 = '22222222-2222-4222-8222-222222222222';
const TENANT_2 = '33333333-3333-4333-8333-333333333333';
const SERVICES: DeclaredService[] = [
  { name: 'graph', clientId: CLIENT_1, tenantId: 'contoso.onmicrosoft.com', clientSecretArn: OWN_SECRET },
  {
    name: 'sharepoint',
    label: 'SharePoint',
    description: 'SharePoint Online',
    isActive: false,
    clientId: CLIENT_2,
    tenantId: TENANT_2,
    clientSecretArn: SHARED_SECRET,
    scopes: 'https://example.sharepoint.com/.default',
    authorityUrl: 'https://login.microsoftonline.com',
    grantType: 'client_credentials',
  },
];

/** Template-only tests: no bundling (a finding of cdk-nag still makes the synthesis throw). */
const build = (broker: TokenBrokerProps) => synthesizeBrokerProps(broker, { bundle: false });
/** Only constructs the broker (props are validated first), without synthesizing it. */
const construct = (broker: TokenBrokerProps) =>
  new TokenBroker(
    new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Probe'),
    'Broker',
    broker,
  );

let stack: TokenBrokerStack;
let template: Template;

beforeAll(() => {
  const built = build({
    allowedSecretArns: [SHARED_SECRETS],
    scheduledRefresh: { interval: Duration.minutes(10) },
    services: SERVICES,
  });
  stack = built.stack;
  template = built.template;
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
        config: { client_id: CLIENT_1, tenant_id: 'contoso.onmicrosoft.com', client_secret_arn: OWN_SECRET },
      },
      {
        name: 'sharepoint',
        label: 'SharePoint',
        description: 'SharePoint Online',
        type: 'oauth_azure_ad',
        is_active: false,
        config: {
          client_id: CLIENT_2,
          tenant_id: TENANT_2,
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

  describe('refused at synth with the rules the admin API applies at deploy time (lib/)', () => {
    const one =
      (service: Partial<DeclaredService>, extra: TokenBrokerProps = {}) =>
      () =>
        construct({ ...extra, services: [{ ...(SERVICES[0] as DeclaredService), ...service }] });

    it('refuses a reserved service name', () => {
      expect(one({ name: 'system' })).toThrow(/services\[0\] \("system"\): name: is a reserved name/);
    });

    it('refuses a name the service schema refuses', () => {
      expect(one({ name: 'Graph' })).toThrow(/services\[0\] \("Graph"\): name: must match/);
    });

    it('refuses a secret outside the prefix and allowedSecretArns', () => {
      expect(one({ clientSecretArn: SHARED_SECRET })).toThrow(/under "token-broker\/dev\/services\/"/);
    });

    it('refuses a secret ARN with a wildcard', () => {
      expect(one({ clientSecretArn: SHARED_SECRETS }, { allowedSecretArns: [SHARED_SECRETS] })).toThrow(
        /client_secret_arn: must be the ARN of a Secrets Manager secret/,
      );
    });

    it('refuses a client id that is not a GUID and a multi-tenant alias as the tenant', () => {
      expect(one({ clientId: 'client-1', tenantId: 'common' })).toThrow(
        /config\.client_id: must be the application \(client\) ID[\s\S]*config\.tenant_id: must name one tenant/,
      );
    });

    it('refuses an authority host that is neither a Microsoft cloud nor listed in allowedAuthorityHosts', () => {
      expect(one({ authorityUrl: 'https://login.example.test/{tenant_id}' })).toThrow(
        /authority host "login.example.test" is not allowed/,
      );
      expect(
        one(
          { authorityUrl: 'https://login.example.test/{tenant_id}' },
          { allowedAuthorityHosts: ['login.example.test'] },
        ),
      ).not.toThrow();
    });

    it('reports every problem of every service and prop at once', () => {
      const services = [{ name: 'system' } as DeclaredService, SERVICES[0], SERVICES[0]] as DeclaredService[];
      let message = '';
      try {
        construct({
          stage: 'Prod',
          secretPrefix: 'token-broker/dev/services/',
          entraTimeout: Duration.seconds(30),
          services,
        });
      } catch (error) {
        message = (error as Error).message;
      }

      expect(message.split('\n').slice(1)).toEqual([
        expect.stringMatching(/^ {2}- stage "Prod" must match/),
        expect.stringMatching(/^ {2}- entraTimeout \(TOKEN_BROKER_ENTRA_TIMEOUT_MS: /),
        '  - entraTimeout must be at least 1 second and at most entraRetryBudget',
        '  - services[0] ("system"): name: is a reserved name',
        '  - services[0] ("system"): config.client_id: is required',
        '  - services[0] ("system"): config.tenant_id: is required',
        '  - services[2] ("graph"): declared more than once',
      ]);
    });
  });
});
