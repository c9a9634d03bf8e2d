/**
 * The stateful resources keep the logical ids they had when they were first deployed: a changed id makes
 * CloudFormation create a new table, key or log group and delete (or orphan) the old one, so an upgrade would
 * lose the service registry or the key that encrypts every secret. The ids below are those of the template before
 * the construct was split into infra/token-broker/ (and of stateful resources added since, marked as such); they
 * must never change. Every optional prop combination the README documents is synthesized here, each passing
 * cdk-nag and Control Tower's guard rules (issue 14). Templates only: no bundling.
 */
import type { Template } from 'aws-cdk-lib/assertions';
import { type SynthesizedBroker, synthesizeBroker, synthesizeBrokerProps, vpcLookupContext } from './synth';
import { guardReport, resourcesOfType } from './template';

const KEY = {
  'AWS::KMS::Key': ['TokenBrokerKey4BA272CB'],
  'AWS::KMS::Alias': ['TokenBrokerKeyAlias75D3867B'],
};
const TABLES = {
  'AWS::DynamoDB::Table': [
    'TokenBrokerServicesTable6EC7FD79',
    'TokenBrokerTokenCacheTableC365FB76',
    // Added with the authorization code flow (issue 12); pinned from its first release on.
    'TokenBrokerUserGrantsTableDE6A9E00',
  ],
};
const LOG_GROUPS = [
  'TokenBrokerAccessLogs44397085',
  'TokenBrokerAdminFunctionLogsF353F447',
  'TokenBrokerDelegatedFunctionLogsD95EFBAA',
  'TokenBrokerTokenFunctionLogsC7281165',
];
const REFRESH_LOGS = 'TokenBrokerRefreshFunctionLogs63ADCF51';
/** Added later (execution logging at ERROR by default, into a log group the broker owns); pinned from then on. */
const EXECUTION_LOGS = 'TokenBrokerExecutionLogs6C5EA39B';
const DECLARE_LOGS = [
  'TokenBrokerDeclareServicesFunctionLogs4DE95D1B',
  'TokenBrokerDeclareServicesProviderLogsDF8F20A4',
];

const statefulIds = (template: Template): Record<string, string[]> =>
  Object.fromEntries(
    ['AWS::KMS::Key', 'AWS::KMS::Alias', 'AWS::DynamoDB::Table', 'AWS::Logs::LogGroup'].map((type) => [
      type,
      Object.keys(resourcesOfType(template, type)).sort(),
    ]),
  );

const ACCOUNT = '123456789012';
const REGION = 'eu-west-1';
const VPC_ID = 'vpc-0123456789abcdef0';
const IN_ACCOUNT = { account: ACCOUNT, region: REGION };
/** The optional props the README documents, as context (`-c key=value`), one group each. */
const PRIVATE_API = { endpointType: 'PRIVATE', vpcEndpointIds: 'vpce-0123456789abcdef0' };
const IN_VPC = {
  vpcId: VPC_ID,
  httpsProxy: 'http://proxy.example.internal:3128',
  ...vpcLookupContext(ACCOUNT, REGION, VPC_ID),
};
const ALARM_TOPIC = { alarmTopicArn: 'arn:aws:sns:eu-west-1:444455556666:token-broker-alarms' };
const WAF = {
  webAclArn:
    'arn:aws:wafv2:eu-west-1:444455556666:regional/webacl/broker/0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f',
};
const CROSS_ACCOUNT = { allowedAccountIds: '111122223333', allowedOrganizationId: 'o-a1b2c3d4e5' };

interface Variant {
  readonly name: string;
  readonly context: Record<string, unknown>;
  readonly environment?: { account: string; region: string };
  readonly logGroups: string[];
}

const ALWAYS = [...LOG_GROUPS, REFRESH_LOGS, EXECUTION_LOGS];
const VARIANTS: Variant[] = [
  { name: 'no props', context: {}, logGroups: ALWAYS },
  { name: 'a PRIVATE API behind an execute-api endpoint', context: PRIVATE_API, logGroups: ALWAYS },
  {
    name: 'functions in a VPC, Entra through a proxy',
    context: IN_VPC,
    environment: IN_ACCOUNT,
    logGroups: ALWAYS,
  },
  { name: 'an existing alarm topic', context: ALARM_TOPIC, logGroups: ALWAYS },
  { name: 'a WAF web ACL', context: WAF, logGroups: ALWAYS },
  { name: 'callers in other accounts and the organisation', context: CROSS_ACCOUNT, logGroups: ALWAYS },
  {
    name: 'federated credentials, functions in a VPC (an STS endpoint, one role for the token functions)',
    context: { federationIssuer: 'https://0f1e2d3c.tokens.sts.global.api.aws', ...IN_VPC },
    environment: IN_ACCOUNT,
    logGroups: ALWAYS,
  },
  {
    name: 'all of them together, without the scheduled refresh',
    context: {
      stage: 'prod',
      ...PRIVATE_API,
      ...IN_VPC,
      ...ALARM_TOPIC,
      ...WAF,
      ...CROSS_ACCOUNT,
      scheduledRefreshMinutes: '0',
    },
    environment: IN_ACCOUNT,
    logGroups: [...LOG_GROUPS, EXECUTION_LOGS],
  },
  {
    name: 'execution logging turned off (an account without the API Gateway CloudWatch role)',
    context: { executionLogLevel: 'OFF' },
    logGroups: [...LOG_GROUPS, REFRESH_LOGS],
  },
];

describe.each(VARIANTS)('synthesis with $name', ({ context, environment, logGroups }) => {
  let synthesized: SynthesizedBroker;

  beforeAll(() => {
    // cdk-nag and the guard rules run in the synthesis: an unacknowledged finding of either throws here.
    synthesized = synthesizeBroker(context, { bundle: false, environment });
  });

  it('passes cdk-nag and the Control Tower guard rules', () => {
    expect(guardReport(synthesized.assembly.directory).violations).toEqual([]);
  });

  it('keeps the logical ids of the key, its alias, the tables and the log groups', () => {
    expect(statefulIds(synthesized.template)).toEqual({
      ...KEY,
      ...TABLES,
      'AWS::Logs::LogGroup': [...logGroups].sort(),
    });
  });
});

describe('synthesis with services declared in code', () => {
  it('keeps the logical ids, plus the log groups of the declaring functions', () => {
    const { template } = synthesizeBrokerProps(
      {
        services: [
          {
            name: 'graph',
            clientId: '00000000-0000-0000-0000-000000000001',
            tenantId: 'contoso.onmicrosoft.com',
            clientSecretArn:
              'arn:aws:secretsmanager:eu-west-1:123456789012:secret:token-broker/dev/services/graph-AbCdEf',
          },
        ],
      },
      { bundle: false },
    );

    expect(statefulIds(template)).toEqual({
      ...KEY,
      ...TABLES,
      'AWS::Logs::LogGroup': [...ALWAYS, ...DECLARE_LOGS].sort(),
    });
  });
});
