/**
 * The broker's props, through the app's context as an operator passes them (`-c key=value`), and the grants a
 * platform team gives its callers. One synthesis with every option set (cdk-nag included) serves most tests;
 * they read templates only, so nothing is bundled.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { TokenBrokerStack } from '../../infra/stack';
import { TokenBroker } from '../../infra/token-broker';
import { adminRoutes, tokenRoutes } from '../../lib/execute-api-grants';
import { resourcePolicyDecision } from './resource-policy';
import { cdkJsonContext, NO_BUNDLING, type SynthesizedBroker, synthesizeBroker } from './synth';
import {
  allowedResourcesByAction,
  asArray,
  type CfnResourceJson,
  functionRoleId,
  logicalIdOf,
  resourcesOfType,
  roleStatements,
  type StatementJson,
} from './template';

const ENDPOINT = 'vpce-0123456789abcdef0';
const OTHER_ENDPOINT = 'vpce-0fedcba9876543210';
const ORG = 'o-a1b2c3d4e5';
const OTHER_ACCOUNT = '111122223333';
const TOPIC = 'arn:aws:sns:eu-west-1:444455556666:token-broker-alarms';
const SHARED_SECRETS = 'arn:aws:secretsmanager:eu-west-1:444455556666:secret:shared/entra/*';
const ONE_SECRET = 'arn:aws:secretsmanager:eu-west-1:444455556666:secret:legacy/graph-AbCdEf';
const SHARED_KEY = 'arn:aws:kms:eu-west-1:444455556666:key/1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d';
const WEB_ACL =
  'arn:aws:wafv2:eu-west-1:444455556666:regional/webacl/broker/0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f';

let synthesized: SynthesizedBroker;
let stack: TokenBrokerStack;
let template: Template;
let callerRoleId: string;
let adminRoleId: string;
let docsRoleId: string;
let readerRoleId: string;

beforeAll(() => {
  synthesized = synthesizeBroker(
    {
      stage: 'prod',
      endpointType: 'PRIVATE',
      vpcEndpointIds: ENDPOINT,
      allowedVpcEndpoints: OTHER_ENDPOINT,
      allowedOrganizationId: ORG,
      allowedAccountIds: OTHER_ACCOUNT,
      throttlingRateLimit: '10',
      throttlingBurstLimit: '20',
      entraTimeoutSeconds: '8',
      entraRetryBudgetSeconds: '15',
      logLevel: 'DEBUG',
      alarmTopicArn: TOPIC,
      webAclArn: WEB_ACL,
      executionLogLevel: 'ERROR',
      removalPolicy: 'destroy',
      allowedAuthorityHosts: 'westeurope.login.microsoft.com,login.example.test:8443',
      allowedSecretArns: `${SHARED_SECRETS},${ONE_SECRET}`,
      allowedSecretKeyArns: SHARED_KEY,
      scheduledRefreshMinutes: '0',
    },
    {
      bundle: false,
      customize: (s) => {
        const caller = new iam.Role(s, 'CallerRole', { assumedBy: new iam.AccountRootPrincipal() });
        const admin = new iam.Role(s, 'AdminRole', { assumedBy: new iam.AccountRootPrincipal() });
        const reader = new iam.Role(s, 'DocsRole', { assumedBy: new iam.AccountRootPrincipal() });
        const tokenReader = new iam.Role(s, 'TokenReaderRole', { assumedBy: new iam.AccountRootPrincipal() });
        s.broker.grantTokenAccess(caller, 'graph');
        s.broker.grantAdmin(admin);
        s.broker.grantApiDocs(reader);
        s.broker.grantTokenReadAccess(tokenReader, 'graph');
        callerRoleId = logicalIdOf(s, caller);
        adminRoleId = logicalIdOf(s, admin);
        docsRoleId = logicalIdOf(s, reader);
        readerRoleId = logicalIdOf(s, tokenReader);
      },
    },
  );
  stack = synthesized.stack;
  template = synthesized.template;
});

const api = () => Object.values(resourcesOfType(template, 'AWS::ApiGateway::RestApi'))[0] as CfnResourceJson;
const policyStatements = () => (api().Properties.Policy as { Statement: StatementJson[] }).Statement;
const statement = (sid: string) => policyStatements().find((s) => s.Sid === sid);
/** The execute-api ARNs granted to a role, from the stage on (`/<stage>/<METHOD>/<path>`). */
const grantedArns = (roleId: string): string[] => {
  const stages = resourcesOfType(template, 'AWS::ApiGateway::Stage');
  const render = (p: unknown): string => {
    if (typeof p === 'string') return p;
    const ref = (p as { Ref: string }).Ref;
    // A Ref to the stage resolves to its name.
    return (stages[ref]?.Properties.StageName as string | undefined) ?? `\${${ref}}`;
  };
  return Object.values(resourcesOfType(template, 'AWS::IAM::Policy'))
    .filter((p) => asArray(p.Properties.Roles).some((r) => (r as { Ref?: string }).Ref === roleId))
    .flatMap((p) => asArray((p.Properties.PolicyDocument as { Statement: StatementJson[] }).Statement))
    .flatMap((s) => {
      expect(s.Action).toBe('execute-api:Invoke');
      return asArray(s.Resource);
    })
    .map((r) => (r as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1].map(render).join(''))
    .map((arn) => arn.replace(/^.*execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:\$\{\w+\}/, ''));
};

describe('private API and resource policy', () => {
  it('makes a PRIVATE API associated with the given VPC endpoint', () => {
    expect(api().Properties.EndpointConfiguration).toEqual({
      Types: ['PRIVATE'],
      VpcEndpointIds: [ENDPOINT],
    });
  });

  it('denies requests through any VPC endpoint but the given and the allowed ones', () => {
    expect(statement('DenyOtherVpcEndpoints')).toMatchObject({
      Effect: 'Deny',
      Principal: { AWS: '*' },
      Action: 'execute-api:Invoke',
      Condition: { StringNotEquals: { 'aws:SourceVpce': [ENDPOINT, OTHER_ENDPOINT] } },
    });
  });

  it("lets this account's principals in through their own identity policies (account principal)", () => {
    expect(statement('AllowOwnAccount')).toMatchObject({ Effect: 'Allow', Resource: 'execute-api:/*' });
    expect(JSON.stringify(statement('AllowOwnAccount')?.Principal)).toContain('AWS::AccountId');
  });

  it('lets the listed accounts in on the token routes only, through their own identity policies', () => {
    expect(JSON.stringify(statement('AllowAccountsTokenRoutes')?.Principal)).toContain(
      `:iam::${OTHER_ACCOUNT}:root`,
    );
    expect(JSON.stringify(statement('AllowAccountsTokenRoutes')?.Principal)).not.toContain('AWS::AccountId');
    expect(asArray(statement('AllowAccountsTokenRoutes')?.Resource).sort()).toEqual([
      'execute-api:/*/DELETE/api/v2/*/client_credentials',
      'execute-api:/*/GET/api/v2/*/client_credentials',
      'execute-api:/*/POST/api/v2/*/client_credentials',
    ]);
  });

  it("lets the organisation's other accounts in on the token routes, never this account's principals without an identity policy", () => {
    expect(statement('AllowOrganizationTokenRoutes')).toMatchObject({
      Effect: 'Allow',
      Principal: { AWS: '*' },
      Resource: asArray(statement('AllowAccountsTokenRoutes')?.Resource),
      Condition: {
        StringEquals: { 'aws:PrincipalOrgID': ORG },
        StringNotEquals: { 'aws:PrincipalAccount': { Ref: 'AWS::AccountId' } },
      },
    });
  });

  it('denies the admin routes to every principal outside this account (aws:PrincipalAccount)', () => {
    expect(statement('DenyAdminRoutesOutsideAccount')).toMatchObject({
      Effect: 'Deny',
      Principal: { AWS: '*' },
      Condition: { StringNotEquals: { 'aws:PrincipalAccount': { Ref: 'AWS::AccountId' } } },
    });
  });

  it('allows no principal "*" without a condition, except on the consent callback (it has no IAM)', () => {
    const open = policyStatements().filter(
      (s) =>
        s.Effect === 'Allow' && JSON.stringify(s.Principal) === '{"AWS":"*"}' && s.Condition === undefined,
    );

    expect(open.map((s) => [s.Sid, s.Resource])).toEqual([
      ['AllowConsentCallback', 'execute-api:/*/GET/api/v2/*/sso'],
    ]);
  });

  it('associates the WAF web ACL with the stage', () => {
    template.hasResourceProperties('AWS::WAFv2::WebACLAssociation', { WebACLArn: WEB_ACL });
  });

  it('names the API stage after the stage, throttled and execution-logged as the context says', () => {
    const stage = Object.values(resourcesOfType(template, 'AWS::ApiGateway::Stage'))[0] as CfnResourceJson;

    expect(stage.Properties.StageName).toBe('prod');
    expect(stage.Properties.MethodSettings).toEqual([
      expect.objectContaining({ LoggingLevel: 'ERROR', ThrottlingRateLimit: 10, ThrottlingBurstLimit: 20 }),
      // The consent callback's own limits (test/infra/authorization-code.test.ts).
      expect.objectContaining({ ResourcePath: '/~1api~1v2~1{service}~1sso', ThrottlingRateLimit: 5 }),
    ]);
  });
});

describe('cross-account access, as the resource policy decides it', () => {
  const OWN_ACCOUNT = '123456789012';
  const ORG_ACCOUNT = '777788889999';
  /** A caller whose identity policy allows execute-api:Invoke on everything (AdministratorAccess). */
  const decide = (account: string, method: string, path: string, orgId?: string) =>
    resourcePolicyDecision(
      policyStatements(),
      { account, orgId, method, path, sourceVpce: ENDPOINT },
      { ownAccount: OWN_ACCOUNT, stage: 'prod' },
    );
  /** Every admin route with sample names, including a service named like the token route's last segment. */
  const adminRequests = adminRoutes().flatMap((r) =>
    ['graph', 'client_credentials'].map((name) => ({ method: r.method, path: r.path.replace('*', name) })),
  );

  it('lets a listed account and an account of the organisation reach every token route', () => {
    for (const { method, path } of tokenRoutes('graph')) {
      expect({ method, path, decision: decide(OTHER_ACCOUNT, method, path) }).toEqual({
        method,
        path,
        decision: 'allow',
      });
      expect(decide(ORG_ACCOUNT, method, path, ORG)).toBe('allow');
    }
  });

  it('refuses a listed account every admin route with an explicit deny, whatever its identity policy allows', () => {
    for (const { method, path } of adminRequests) {
      expect({ method, path, decision: decide(OTHER_ACCOUNT, method, path) }).toEqual({
        method,
        path,
        decision: 'explicit-deny',
      });
    }
  });

  it('refuses an account of the organisation every admin route with an explicit deny', () => {
    for (const { method, path } of adminRequests)
      expect(decide(ORG_ACCOUNT, method, path, ORG)).toBe('explicit-deny');
  });

  it('lets nobody else in: an account neither listed nor in the organisation gets no allow', () => {
    expect(decide('999999999999', 'GET', '/api/v2/graph/client_credentials')).toBe('no-allow');
    expect(decide('999999999999', 'GET', '/api/v2/graph/client_credentials', 'o-other')).toBe('no-allow');
  });

  it("leaves this account's principals to their identity policies on every route", () => {
    for (const { method, path } of [...adminRequests, ...tokenRoutes('graph')]) {
      expect(decide(OWN_ACCOUNT, method, path)).toBe('allow');
    }
  });
});

describe('functions, data and alarms', () => {
  const fnProps = (construct: TokenBroker['tokenFunction']) =>
    resourcesOfType(template, 'AWS::Lambda::Function')[logicalIdOf(stack, construct)]?.Properties as Record<
      string,
      unknown
    >;

  it('gives the token function the lease wait, the Entra retry budget and 5 s for AWS calls', () => {
    expect(fnProps(stack.broker.tokenFunction).Timeout).toBe(25);
    expect(fnProps(stack.broker.tokenFunction)).toMatchObject({
      Environment: {
        Variables: expect.objectContaining({
          TOKEN_BROKER_ENTRA_TIMEOUT_MS: '8000',
          TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS: '15000',
        }),
      },
    });
  });

  it('passes the allowed authority hosts, the log level and the stage prefix to the functions', () => {
    expect(fnProps(stack.broker.adminFunction)).toMatchObject({
      Environment: {
        Variables: expect.objectContaining({
          TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: 'westeurope.login.microsoft.com,login.example.test:8443',
          POWERTOOLS_LOG_LEVEL: 'DEBUG',
          TOKEN_BROKER_SECRET_PREFIX: 'token-broker/prod/services/',
        }),
      },
    });
  });

  it('lets the token function read referenced secrets and the admin function only check that they exist', () => {
    const managed =
      'arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:token-broker/prod/services/*';
    const allowed = (construct: TokenBroker['tokenFunction']) =>
      allowedResourcesByAction(
        roleStatements(template, functionRoleId(template, logicalIdOf(stack, construct))),
        'secretsmanager',
      );

    expect(allowed(stack.broker.tokenFunction)).toEqual({
      'secretsmanager:GetSecretValue': [ONE_SECRET, SHARED_SECRETS, managed].sort(),
    });
    expect(allowed(stack.broker.adminFunction)).toEqual({
      'secretsmanager:CreateSecret': [managed],
      'secretsmanager:TagResource': [managed],
      'secretsmanager:DeleteSecret': [managed],
      'secretsmanager:DescribeSecret': [ONE_SECRET, SHARED_SECRETS, managed].sort(),
    });
  });

  it("lets the token function decrypt with the referenced secrets' keys through Secrets Manager only", () => {
    const statements = roleStatements(
      template,
      functionRoleId(template, logicalIdOf(stack, stack.broker.tokenFunction)),
    ).filter((st) => asArray(st.Resource).includes(SHARED_KEY));

    expect(statements).toHaveLength(1);
    expect(statements[0]?.Action).toBe('kms:Decrypt');
    expect(JSON.stringify(statements[0]?.Condition)).toContain('"secretsmanager."');
  });

  it('passes the referenced secret ARNs to the functions', () => {
    expect(fnProps(stack.broker.tokenFunction)).toMatchObject({
      Environment: {
        Variables: expect.objectContaining({
          TOKEN_BROKER_ALLOWED_SECRET_ARNS: `${SHARED_SECRETS},${ONE_SECRET}`,
        }),
      },
    });
  });

  it('deletes the services table, the key and the logs with removalPolicy destroy', () => {
    const deletable = (type: string) =>
      Object.values(resourcesOfType(template, type)).every((r) => r.DeletionPolicy === 'Delete');

    expect(deletable('AWS::DynamoDB::Table')).toBe(true);
    expect(deletable('AWS::KMS::Key')).toBe(true);
    expect(deletable('AWS::Logs::LogGroup')).toBe(true);
    template.hasResourceProperties('AWS::DynamoDB::Table', { DeletionProtectionEnabled: false });
  });

  it('creates no refresh function nor schedule with scheduledRefreshMinutes 0', () => {
    expect(stack.broker.refreshFunction).toBeUndefined();
    expect(stack.broker.refreshRule).toBeUndefined();
    expect(Object.keys(resourcesOfType(template, 'AWS::Events::Rule'))).toEqual([]);
    // token, admin and delegated
    expect(Object.keys(resourcesOfType(template, 'AWS::Lambda::Function'))).toHaveLength(3);
  });

  it('sends alarm and OK notifications to the topic', () => {
    const alarms = Object.values(resourcesOfType(template, 'AWS::CloudWatch::Alarm'));

    expect(alarms).toHaveLength(8);
    for (const a of alarms) expect(a.Properties).toMatchObject({ AlarmActions: [TOPIC], OKActions: [TOPIC] });
  });

  it('names the alarms after the stage', () => {
    const names = Object.values(resourcesOfType(template, 'AWS::CloudWatch::Alarm')).map(
      (a) => a.Properties.AlarmName,
    );

    expect(names.every((n) => String(n).startsWith('token-broker-prod-'))).toBe(true);
  });
});

describe('grants', () => {
  it("grants execute-api:Invoke on exactly one service's client_credentials routes", () => {
    expect(grantedArns(callerRoleId).sort()).toEqual([
      '/prod/DELETE/api/v2/graph/client_credentials',
      '/prod/GET/api/v2/graph/client_credentials',
      '/prod/POST/api/v2/graph/client_credentials',
    ]);
  });

  it("grants a read-only consumer GET on exactly one service's client_credentials route", () => {
    expect(grantedArns(readerRoleId)).toEqual(['/prod/GET/api/v2/graph/client_credentials']);
  });

  it('refuses a read-only token grant for anything but one valid service name', () => {
    const role = new iam.Role(stack, 'ReadProbe', { assumedBy: new iam.AccountRootPrincipal() });

    for (const name of ['*', 'graph/*', 'system']) {
      expect(() => stack.broker.grantTokenReadAccess(role, name)).toThrow(/not a valid service name/);
    }
  });

  it('grants an administrator the system/service routes (certificates included), the federation facts and the API docs, and no token route', () => {
    expect(grantedArns(adminRoleId).sort()).toEqual([
      '/prod/DELETE/api/v2/system/service/*',
      '/prod/GET/api/v2/api_docs',
      '/prod/GET/api/v2/system/federation',
      '/prod/GET/api/v2/system/service',
      '/prod/GET/api/v2/system/service/*',
      '/prod/GET/api/v2/system/service/*/certificate',
      '/prod/GET/api/v2/system/service/*/users',
      '/prod/PATCH/api/v2/system/service/*',
      '/prod/POST/api/v2/system/service',
      '/prod/POST/api/v2/system/service/*/certificate',
    ]);
  });

  it('grants a documentation reader the API docs only', () => {
    expect(grantedArns(docsRoleId)).toEqual(['/prod/GET/api/v2/api_docs']);
  });

  it('refuses a token grant for anything but one valid service name (no IAM wildcards)', () => {
    const role = new iam.Role(stack, 'Probe', { assumedBy: new iam.AccountRootPrincipal() });

    for (const name of ['*', 'gra?h', 'graph/*', 'Graph', 'system']) {
      expect(() => stack.broker.grantTokenAccess(role, name)).toThrow(/not a valid service name/);
    }
  });
});

describe('props that contradict each other are refused before anything is built', () => {
  const build = (props: ConstructorParameters<typeof TokenBroker>[2]) => () =>
    new TokenBroker(new App({ context: { ...cdkJsonContext(), ...NO_BUNDLING } }), 'Broker', props);

  it('refuses a PRIVATE API without VPC endpoints', () => {
    expect(build({ endpointType: 'PRIVATE' })).toThrow(/needs at least one execute-api interface endpoint/);
  });

  it('refuses source IP ranges on a PRIVATE API', () => {
    const endpoint = { vpcEndpointId: ENDPOINT } as never;
    expect(
      build({ endpointType: 'PRIVATE', vpcEndpoints: [endpoint], allowedSourceIps: ['10.0.0.0/8'] }),
    ).toThrow(/allowedSourceIps applies to REGIONAL APIs/);
  });

  it('refuses allowed VPC endpoints on a REGIONAL API', () => {
    expect(build({ allowedVpcEndpoints: [ENDPOINT] })).toThrow(/apply to PRIVATE APIs only/);
  });

  it('refuses an Entra retry budget that would leave no room under API Gateway 29 s', () => {
    expect(build({ entraRetryBudget: Duration.seconds(16) })).toThrow(/26 s timeout/);
  });

  it('refuses an Entra timeout longer than the retry budget', () => {
    expect(build({ entraTimeout: Duration.seconds(13) })).toThrow(/at most entraRetryBudget/);
  });

  it('refuses a secret prefix that does not end with "/"', () => {
    expect(build({ secretPrefix: 'token-broker/services' })).toThrow(/must end with "\/"/);
  });

  it('refuses referenced secrets that are not secret ARNs, or that IAM would read as wider wildcards', () => {
    for (const arn of [
      '*',
      'arn:aws:secretsmanager:eu-west-1:444455556666:secret:*',
      `${ONE_SECRET}?`,
      'shared/entra/*',
    ]) {
      expect(build({ allowedSecretArns: [arn] })).toThrow(/must be a Secrets Manager secret ARN/);
    }
  });

  it('refuses a stage that cannot be part of resource names', () => {
    expect(build({ stage: 'Prod Stage' })).toThrow(/stage "Prod Stage" must match/);
  });
});

describe('two brokers in one stack (two stages)', () => {
  it('gives them different KMS aliases, alarm names and secret prefixes', () => {
    const app = new App({ context: { ...cdkJsonContext(), ...NO_BUNDLING } });
    const shared = new Stack(app, 'Shared');
    const blue = new TokenBroker(shared, 'Blue', { stage: 'blue' });
    const green = new TokenBroker(shared, 'Green', { stage: 'green' });
    const both = Template.fromStack(shared);
    const names = (type: string, property: string) =>
      Object.values(both.findResources(type)).map((r) => (r as CfnResourceJson).Properties[property]);

    expect(new Set(names('AWS::KMS::Alias', 'AliasName'))).toEqual(
      new Set(['alias/token-broker-blue', 'alias/token-broker-green']),
    );
    expect(new Set(names('AWS::CloudWatch::Alarm', 'AlarmName')).size).toBe(20);
    expect([blue.secretPrefix, green.secretPrefix]).toEqual([
      'token-broker/blue/services/',
      'token-broker/green/services/',
    ]);
  });
});

describe('a REGIONAL API restricted to source IP ranges', () => {
  it('denies requests from outside the ranges and lets nobody else in', () => {
    const context = {
      ...cdkJsonContext(),
      stage: 'ipcheck',
      allowedSourceIps: '203.0.113.0/24,198.51.100.7/32',
    };
    const { stack: regional } = synthesizeBroker(context, { bundle: false });
    const policy = Template.fromStack(regional).findResources('AWS::ApiGateway::RestApi');
    const statements = (Object.values(policy)[0] as CfnResourceJson).Properties.Policy as {
      Statement: StatementJson[];
    };

    expect(statements.Statement.map((s) => s.Sid)).toEqual([
      'AllowOwnAccount',
      'DenyAdminRoutesOutsideAccount',
      'DenyOtherSourceIps',
      'AllowConsentCallback',
    ]);
    expect(statements.Statement[2]).toMatchObject({
      Effect: 'Deny',
      Condition: { NotIpAddress: { 'aws:SourceIp': ['203.0.113.0/24', '198.51.100.7/32'] } },
    });
  });
});
