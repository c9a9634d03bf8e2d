/**
 * The stateful resources keep the logical ids they had when they were first deployed: a changed id makes
 * CloudFormation create a new table, key or log group and delete (or orphan) the old one, so an upgrade would
 * lose the service registry or the key that encrypts every secret. The ids below are those of the template before
 * the construct was split into infra/token-broker/; they must never change. Templates only: no bundling.
 */
import type { Template } from 'aws-cdk-lib/assertions';
import { synthesizeBroker, synthesizeBrokerProps } from './synth';
import { resourcesOfType } from './template';

const KEY = {
  'AWS::KMS::Key': ['TokenBrokerKey4BA272CB'],
  'AWS::KMS::Alias': ['TokenBrokerKeyAlias75D3867B'],
};
const TABLES = {
  'AWS::DynamoDB::Table': ['TokenBrokerServicesTable6EC7FD79', 'TokenBrokerTokenCacheTableC365FB76'],
};
const LOG_GROUPS = [
  'TokenBrokerAccessLogs44397085',
  'TokenBrokerAdminFunctionLogsF353F447',
  'TokenBrokerTokenFunctionLogsC7281165',
];
const REFRESH_LOGS = 'TokenBrokerRefreshFunctionLogs63ADCF51';
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

describe('logical ids of the stateful resources', () => {
  it('are those of the first release with no props', () => {
    const { template } = synthesizeBroker({}, { bundle: false });

    expect(statefulIds(template)).toEqual({
      ...KEY,
      ...TABLES,
      'AWS::Logs::LogGroup': [...LOG_GROUPS, REFRESH_LOGS].sort(),
    });
  });

  it('are the same with every context option set (private API, cross-account, alarm topic, WAF)', () => {
    const { template } = synthesizeBroker(
      {
        stage: 'prod',
        endpointType: 'PRIVATE',
        vpcEndpointIds: 'vpce-0123456789abcdef0',
        allowedOrganizationId: 'o-a1b2c3d4e5',
        allowedAccountIds: '111122223333',
        alarmTopicArn: 'arn:aws:sns:eu-west-1:444455556666:token-broker-alarms',
        webAclArn:
          'arn:aws:wafv2:eu-west-1:444455556666:regional/webacl/broker/0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f',
        scheduledRefreshMinutes: '0',
      },
      { bundle: false },
    );

    expect(statefulIds(template)).toEqual({ ...KEY, ...TABLES, 'AWS::Logs::LogGroup': LOG_GROUPS });
  });

  it('are the same with declared services, plus the log groups of the declaring functions', () => {
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
      'AWS::Logs::LogGroup': [...LOG_GROUPS, REFRESH_LOGS, ...DECLARE_LOGS].sort(),
    });
  });
});
