/**
 * IAM of the credentials without a shared secret (issue 11): KMS signing keys (`kms_certificate`) bound to this
 * broker by its instance tag, STS web identity tokens (`federated`) bound to Entra's audiences, the STS endpoint
 * in a VPC, and the certificate-expiry alarm. Templates only (no bundling); cdk-nag and the guard rules run in
 * every synthesis here (a finding would throw).
 */
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { TokenBroker, type TokenBrokerProps } from '../../infra/token-broker';
import { DEFAULT_FEDERATION_AUDIENCE, WEB_IDENTITY_TOKEN_SECONDS } from '../../lib/credentials/federated';
import { BROKER_INSTANCE_TAG, BROKER_KEY_TAG } from '../../lib/credentials/kms-tags';
import { CERTIFICATE_DAYS_TO_EXPIRY_METRIC, METRICS_NAMESPACE } from '../../lib/metrics';
import {
  cdkJsonContext,
  NO_BUNDLING,
  type SynthesizedBroker,
  synthesizeBroker,
  vpcLookupContext,
} from './synth';
import {
  asArray,
  type CfnResourceJson,
  functionRoleId,
  logicalIdOf,
  renderArn,
  resourcesOfType,
  roleStatements,
  type StatementJson,
} from './template';

const ISSUER = 'https://0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b.tokens.sts.global.api.aws';
const USGOV_AUDIENCE = 'api://AzureADTokenExchangeUSGov';
const ACCOUNT_KEYS = 'arn:<AWS::Partition>:kms:<AWS::Region>:<AWS::AccountId>:key/*';
const INSTANCE = 'token-broker-dev';
const OWNED = { [`aws:ResourceTag/${BROKER_INSTANCE_TAG}`]: INSTANCE };

let plain: SynthesizedBroker;
let federated: SynthesizedBroker;

beforeAll(() => {
  plain = synthesizeBroker({}, { bundle: false });
  federated = synthesizeBroker(
    { federationIssuer: ISSUER, federationAudiences: USGOV_AUDIENCE },
    { bundle: false },
  );
});

type Fn = 'token' | 'admin' | 'refresh' | 'delegated';
const functionId = (s: SynthesizedBroker, fn: Fn): string => {
  const { broker } = s.stack;
  const construct = {
    token: broker.tokenFunction,
    admin: broker.adminFunction,
    refresh: broker.refreshFunction,
    delegated: broker.delegatedFunction,
  }[fn];
  if (!construct) throw new Error(`no ${fn} function`);
  return logicalIdOf(s.stack, construct);
};
const statementsOf = (s: SynthesizedBroker, fn: Fn): StatementJson[] =>
  roleStatements(s.template, functionRoleId(s.template, functionId(s, fn)));
const withAction = (statements: StatementJson[], action: string) =>
  statements.filter((st) => asArray(st.Action).includes(action));
/** Every statement of every identity policy in the template. */
const allStatements = (s: SynthesizedBroker): StatementJson[] =>
  Object.values(resourcesOfType(s.template, 'AWS::IAM::Policy')).flatMap((p) =>
    asArray((p.Properties.PolicyDocument as { Statement: StatementJson[] }).Statement),
  );
const environmentOf = (s: SynthesizedBroker, fn: Fn): Record<string, unknown> => {
  const resource = resourcesOfType(s.template, 'AWS::Lambda::Function')[functionId(s, fn)];
  if (!resource) throw new Error(`no ${fn} function in the template`);
  return (resource.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
};
/** A statement with its resources rendered, for exact comparison. */
const rendered = (st: StatementJson) => ({ ...st, Resource: asArray(st.Resource).map(renderArn) });

describe('KMS signing keys (kms_certificate)', () => {
  it('lets the admin function create keys only as RSA 2048/3072 SIGN_VERIFY keys with exactly the broker tags', () => {
    const createKey = withAction(statementsOf(plain, 'admin'), 'kms:CreateKey');

    expect(createKey.map(rendered)).toEqual([
      {
        Sid: 'CreateBrokerSigningKeys',
        Effect: 'Allow',
        Action: 'kms:CreateKey',
        Resource: ['*'],
        Condition: {
          StringEquals: {
            [`aws:RequestTag/${BROKER_INSTANCE_TAG}`]: INSTANCE,
            'kms:KeySpec': ['RSA_2048', 'RSA_3072'],
            'kms:KeyUsage': 'SIGN_VERIFY',
          },
          'ForAllValues:StringEquals': { 'aws:TagKeys': [BROKER_INSTANCE_TAG, BROKER_KEY_TAG] },
          Null: { [`aws:RequestTag/${BROKER_KEY_TAG}`]: 'false' },
        },
      },
    ]);
  });

  it('lets the admin function tag keys (as CreateKey with tags needs) only with the broker tags', () => {
    const tagging = withAction(statementsOf(plain, 'admin'), 'kms:TagResource');

    expect(tagging.map(rendered)).toEqual([
      expect.objectContaining({
        Resource: [ACCOUNT_KEYS],
        Condition: {
          StringEquals: { [`aws:RequestTag/${BROKER_INSTANCE_TAG}`]: INSTANCE },
          'ForAllValues:StringEquals': { 'aws:TagKeys': [BROKER_INSTANCE_TAG, BROKER_KEY_TAG] },
          Null: { [`aws:RequestTag/${BROKER_KEY_TAG}`]: 'false' },
        },
      }),
    ]);
  });

  it('lets the admin function read, sign certificates with (PKCS#1 v1.5) and retire only keys tagged for this broker', () => {
    const admin = statementsOf(plain, 'admin');

    expect(withAction(admin, 'kms:GetPublicKey').map(rendered)).toEqual([
      expect.objectContaining({
        Action: ['kms:DescribeKey', 'kms:GetPublicKey'],
        Resource: [ACCOUNT_KEYS],
        Condition: { StringEquals: OWNED },
      }),
    ]);
    expect(withAction(admin, 'kms:Sign').map(rendered)).toEqual([
      expect.objectContaining({
        Resource: [ACCOUNT_KEYS],
        Condition: { StringEquals: { ...OWNED, 'kms:SigningAlgorithm': 'RSASSA_PKCS1_V1_5_SHA_256' } },
      }),
    ]);
    // Only signing keys the broker created (they carry the service tag): an administrator's own key, or any
    // encryption key, is never deleted.
    expect(withAction(admin, 'kms:ScheduleKeyDeletion').map(rendered)).toEqual([
      expect.objectContaining({
        Resource: [ACCOUNT_KEYS],
        Condition: {
          StringEquals: { ...OWNED, 'kms:KeySpec': ['RSA_2048', 'RSA_3072'], 'kms:KeyUsage': 'SIGN_VERIFY' },
          Null: { [`aws:ResourceTag/${BROKER_KEY_TAG}`]: 'false' },
        },
      }),
    ]);
  });

  it('lets the token, refresh and delegated functions only sign, with PS256, and only with keys tagged for this broker', () => {
    for (const fn of ['token', 'refresh', 'delegated'] as const) {
      const kmsOnSigningKeys = statementsOf(plain, fn).filter((st) =>
        asArray(st.Resource).some((r) => renderArn(r) === ACCOUNT_KEYS),
      );

      expect(kmsOnSigningKeys.map(rendered)).toEqual([
        {
          Sid: 'SignClientAssertionsWithBrokerKeys',
          Effect: 'Allow',
          Action: 'kms:Sign',
          Resource: [ACCOUNT_KEYS],
          Condition: { StringEquals: { ...OWNED, 'kms:SigningAlgorithm': 'RSASSA_PSS_SHA_256' } },
        },
      ]);
    }
  });

  it('gives no role kms:Sign without the condition on the broker instance tag', () => {
    // The admin function signs the certificates it issues (PKCS#1 v1.5); the others sign client assertions (PS256).
    const algorithmBySid: Record<string, string> = {
      SignClientAssertionsWithBrokerKeys: 'RSASSA_PSS_SHA_256',
      SignBrokerCertificates: 'RSASSA_PKCS1_V1_5_SHA_256',
    };
    // Token, admin, refresh and delegated roles; with federation the refresh function shares the token role.
    for (const [s, roles] of [
      [plain, 4],
      [federated, 3],
    ] as const) {
      const signing = allStatements(s).filter((st) =>
        asArray(st.Action).some((a) => a === 'kms:Sign' || a === 'kms:*'),
      );

      expect(signing).toHaveLength(roles);
      for (const st of signing) {
        expect(st.Condition).toStrictEqual({
          StringEquals: { ...OWNED, 'kms:SigningAlgorithm': algorithmBySid[st.Sid ?? ''] },
        });
      }
    }
  });

  it('gives the key-management actions to no other function than admin', () => {
    const managing = ['kms:CreateKey', 'kms:TagResource', 'kms:ScheduleKeyDeletion', 'kms:GetPublicKey'];
    for (const fn of ['token', 'refresh', 'delegated'] as const) {
      const actions = statementsOf(plain, fn).flatMap((st) => asArray(st.Action));
      expect(actions.filter((a) => managing.includes(a))).toEqual([]);
    }
  });

  it('tells every function its instance id, the value IAM expects in the tag', () => {
    for (const fn of ['token', 'admin', 'refresh', 'delegated'] as const) {
      expect(environmentOf(plain, fn).TOKEN_BROKER_INSTANCE_ID).toBe(INSTANCE);
    }
  });

  it('refuses a namePrefix that KMS would not take as the instance tag value', () => {
    const build = () =>
      new TokenBroker(new App({ context: { ...cdkJsonContext(), ...NO_BUNDLING } }), 'Broker', {
        namePrefix: 'broker;prod',
      });

    expect(build).toThrow(/namePrefix \(TOKEN_BROKER_INSTANCE_ID: must be a KMS tag value/);
  });

  it('keeps two brokers in one account apart: each reaches only keys tagged with its own instance id', () => {
    const app = new App({ context: { ...cdkJsonContext(), ...NO_BUNDLING } });
    const shared = new Stack(app, 'Shared');
    new TokenBroker(shared, 'Blue', { stage: 'blue' });
    new TokenBroker(shared, 'Green', { stage: 'green' });
    const statements = Object.values(Template.fromStack(shared).findResources('AWS::IAM::Policy')).flatMap(
      (p) =>
        asArray(
          (p as CfnResourceJson).Properties.PolicyDocument as unknown as { Statement: StatementJson[] },
        ).flatMap((d) => d.Statement),
    );
    const instances = (action: string) =>
      new Set(
        withAction(statements, action).map(
          (st) =>
            st.Condition?.StringEquals?.[`aws:ResourceTag/${BROKER_INSTANCE_TAG}`] ??
            st.Condition?.StringEquals?.[`aws:RequestTag/${BROKER_INSTANCE_TAG}`],
        ),
      );

    for (const action of ['kms:Sign', 'kms:CreateKey', 'kms:ScheduleKeyDeletion']) {
      expect(instances(action)).toEqual(new Set(['token-broker-blue', 'token-broker-green']));
    }
  });
});

describe('federated credentials (STS web identity tokens)', () => {
  it('grants sts:GetWebIdentityToken to no role without federation', () => {
    expect(withAction(allStatements(plain), 'sts:GetWebIdentityToken')).toEqual([]);
    for (const fn of ['token', 'admin', 'refresh'] as const) {
      expect(Object.keys(environmentOf(plain, fn)).filter((k) => k.includes('FEDERATION'))).toEqual([]);
    }
  });

  it("lets the token functions' role get tokens only for Entra's audiences, RS256, for at most 5 minutes", () => {
    expect(withAction(statementsOf(federated, 'token'), 'sts:GetWebIdentityToken')).toEqual([
      {
        Sid: 'WebIdentityTokensForEntra',
        Effect: 'Allow',
        Action: 'sts:GetWebIdentityToken',
        Resource: '*',
        Condition: {
          'ForAllValues:StringEquals': {
            'sts:IdentityTokenAudience': [DEFAULT_FEDERATION_AUDIENCE, USGOV_AUDIENCE],
          },
          Null: { 'sts:IdentityTokenAudience': 'false' },
          StringEquals: { 'sts:SigningAlgorithm': 'RS256' },
          NumericLessThanEquals: { 'sts:DurationSeconds': WEB_IDENTITY_TOKEN_SECONDS },
        },
      },
    ]);
  });

  it('grants sts:GetWebIdentityToken nowhere without the audience condition', () => {
    const granting = allStatements(federated).filter((st) =>
      asArray(st.Action).some((a) => a.startsWith('sts:')),
    );

    expect(granting).toHaveLength(1);
    expect(granting[0]?.Condition?.['ForAllValues:StringEquals']?.['sts:IdentityTokenAudience']).toEqual([
      DEFAULT_FEDERATION_AUDIENCE,
      USGOV_AUDIENCE,
    ]);
    expect(granting[0]?.Condition?.Null).toEqual({ 'sts:IdentityTokenAudience': 'false' });
  });

  it('runs the token and refresh functions as one role, the subject STS names and the app registrations trust', () => {
    const token = functionRoleId(federated.template, functionId(federated, 'token'));
    const refresh = functionRoleId(federated.template, functionId(federated, 'refresh'));
    const outputs = federated.template.findOutputs('FederationSubject') as Record<string, { Value: unknown }>;

    expect(refresh).toBe(token);
    expect(outputs.FederationSubject?.Value).toEqual({ 'Fn::GetAtt': [token, 'Arn'] });
    // Without federation each keeps its own role (no output).
    expect(functionRoleId(plain.template, functionId(plain, 'refresh'))).not.toBe(
      functionRoleId(plain.template, functionId(plain, 'token')),
    );
    expect(Object.keys(plain.template.findOutputs('FederationSubject'))).toEqual([]);
  });

  it('tells the token, refresh and admin functions the issuer and the subject, and no other function', () => {
    const role = functionRoleId(federated.template, functionId(federated, 'token'));
    for (const fn of ['token', 'refresh', 'admin'] as const) {
      expect(environmentOf(federated, fn)).toMatchObject({
        TOKEN_BROKER_FEDERATION_ISSUER: ISSUER,
        TOKEN_BROKER_FEDERATION_SUBJECT: { 'Fn::GetAtt': [role, 'Arn'] },
      });
    }
    expect(
      Object.keys(environmentOf(federated, 'delegated')).filter((k) => k.includes('FEDERATION')),
    ).toEqual([]);
  });

  it('tells the admin function the extra audiences its roles may request, so it refuses others at the write', () => {
    expect(environmentOf(federated, 'admin').TOKEN_BROKER_FEDERATION_AUDIENCES).toBe(USGOV_AUDIENCE);
    expect(environmentOf(plain, 'admin')).not.toHaveProperty('TOKEN_BROKER_FEDERATION_AUDIENCES');
  });

  it('gives the admin function no STS or IAM permission: it answers the federation facts from its environment', () => {
    const actions = statementsOf(federated, 'admin').flatMap((st) => asArray(st.Action));

    expect(actions.filter((a) => a.startsWith('sts:') || a.startsWith('iam:'))).toEqual([]);
  });

  it('creates an STS interface endpoint (regional STS, private DNS) in the VPC only with federation', () => {
    const inVpc = (context: Record<string, unknown>) =>
      synthesizeBroker(
        {
          vpcId: 'vpc-0123456789abcdef0',
          ...vpcLookupContext('123456789012', 'eu-west-1', 'vpc-0123456789abcdef0'),
          ...context,
        },
        { bundle: false, environment: { account: '123456789012', region: 'eu-west-1' } },
      );
    const stsEndpoints = (s: SynthesizedBroker) =>
      Object.values(resourcesOfType(s.template, 'AWS::EC2::VPCEndpoint'))
        .map((e) => e.Properties)
        .filter((p) => JSON.stringify(p.ServiceName).includes('.sts'));

    expect(stsEndpoints(inVpc({ federationIssuer: ISSUER }))).toEqual([
      expect.objectContaining({
        ServiceName: 'com.amazonaws.eu-west-1.sts',
        VpcEndpointType: 'Interface',
        PrivateDnsEnabled: true,
      }),
    ]);
    expect(stsEndpoints(inVpc({}))).toEqual([]);
  });

  it('refuses an issuer that is not the https URL AWS prints, and audiences IAM would misread', () => {
    const build = (federation: TokenBrokerProps['federation']) => () =>
      new TokenBroker(new App({ context: { ...cdkJsonContext(), ...NO_BUNDLING } }), 'Broker', {
        federation,
      });

    for (const issuer of ['', 'http://issuer.example', `${ISSUER}/`, `${ISSUER}?x=1`, 'not a url']) {
      expect(build({ issuer })).toThrow(/federation\.issuer/);
    }
    expect(build({ issuer: ISSUER, audiences: ['api://*'] })).toThrow(/federation\.audiences: "api:\/\/\*"/);
    expect(build({ issuer: ISSUER, audiences: [''] })).toThrow(/federation\.audiences/);
  });

  it('refuses federationAudiences without federationIssuer (context)', () => {
    expect(() => synthesizeBroker({ federationAudiences: USGOV_AUDIENCE }, { bundle: false })).toThrow(
      /"federationAudiences" needs "federationIssuer"/,
    );
  });
});

describe('certificate expiry', () => {
  const expiryAlarms = (s: SynthesizedBroker) =>
    Object.values(resourcesOfType(s.template, 'AWS::CloudWatch::Alarm'))
      .map((a) => a.Properties)
      .filter((p) => p.MetricName === CERTIFICATE_DAYS_TO_EXPIRY_METRIC);

  it('alarms when the certificate closest to expiry has less than 30 days left; no data is not breaching', () => {
    expect(expiryAlarms(plain)).toEqual([
      expect.objectContaining({
        AlarmName: 'token-broker-dev-certificate-expiry',
        Namespace: METRICS_NAMESPACE,
        Dimensions: [{ Name: 'service', Value: 'token-broker' }],
        Statistic: 'Minimum',
        Threshold: 30,
        ComparisonOperator: 'LessThanThreshold',
        TreatMissingData: 'notBreaching',
      }),
    ]);
  });

  it('creates no expiry alarm without the scheduled refresh, which measures it', () => {
    expect(expiryAlarms(synthesizeBroker({ scheduledRefreshMinutes: '0' }, { bundle: false }))).toEqual([]);
  });
});
